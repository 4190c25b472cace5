#!/usr/bin/python3
"""End-to-end tests of per-task state: job control (stopped processes, stop
reports, pending stop signals), ptrace relationships, the credential switch
against the parent-death signal and the dumpable flag, per-process
attributes, cgroup membership, and pid 2 of a PID namespace.

Run: test_taskstate.py --cryo PATH --workloads DIR [NAME ...]
"""
import ctypes
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat, proc_status  # noqa: E402


def children_of(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        out += [int(k) for k in cryotest.read_text("/proc/%d/task/%s/children" % (pid, tid), "").split()]
    return sorted(out)


def thread_states(pid):
    return sorted(proc_stat(int(t))["state"] if proc_stat(int(t)) else "?"
                  for t in os.listdir("/proc/%d/task" % pid))


def dump_kill(h, w, images):
    pids = [w.pid] + children_of(w.pid)
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)


# ---------------------------------------------------------------- job control

def start_jobctl(h):
    w = h.start_workload("jobctl", "tree")
    h.wait_ready(w)
    kids = children_of(w.pid)
    check_eq(len(kids), 4, "children of the jobctl tree")
    return w, kids


def check_stopped_kids(kids, when):
    c1, c2, c3, c4 = kids
    check_eq(thread_states(c1), ["T"], "states of c1 " + when)
    check_eq(thread_states(c2), ["T"], "states of c2 " + when)
    check_eq(thread_states(c3), ["T", "T", "T"], "thread states of c3 " + when)
    check(proc_stat(c4)["state"] in ("S", "R"), "c4 runs " + when)


def test_stopped_tree_kill(h):
    w, kids = start_jobctl(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    r = h.dump(w.pid, images)
    check("unexpected stop" not in r.stderr + (r.log or ""), "dump warned about a stop:\n" + r.describe())
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid] + kids)
    rr = h.restore(images, expected_pid=w.pid)
    check_eq(children_of(rr.pid), kids, "children after restore")
    check_stopped_kids(kids, "after restore")
    rw = w.restored(rr.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (SIGCONT)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored tree exit status")


def test_stopped_tree_leave_running(h):
    w, kids = start_jobctl(h)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, leave_running=True)
    check("unexpected stop" not in r.stderr + (r.log or ""), "dump warned about a stop:\n" + r.describe())
    # Still stopped, not resumed by cryo, and the stop reports are as they were.
    check_stopped_kids(kids, "after dump --leave-running")
    h.verify_ok(w, when="after dump --leave-running")
    h.verify_ok(w, exit=True, when="after dump --leave-running (SIGCONT)")
    check_eq(h.wait_exit(w), ("exit", 0), "original tree exit status")


def test_stopped_tree_rewind(h):
    w, kids = start_jobctl(h)
    images = h.mkdir("img")
    dump_kill(h, w, images)
    for i in range(2):
        rr = h.restore(images, expected_pid=w.pid)
        check_stopped_kids(kids, "after restore %d" % i)
        rw = w.restored(rr.pid)
        h.verify_ok(rw, exit=(i == 1), when="after restore %d" % i)
        if i == 0:
            for pid in [rr.pid] + kids:
                h.cleanup_one(pid)
    check_eq(h.wait_exit(rw), ("exit", 0), "restored tree exit status")


def test_stopped_root(h):
    w = h.start_workload("sleep")
    os.kill(w.pid, signal.SIGSTOP)
    h.wait_state(w.pid, "T")
    # A second SIGSTOP stays pending while the process is stopped (no thread
    # takes it); a SIGCONT would flush it.
    os.kill(w.pid, signal.SIGSTOP)
    check(signal.SIGSTOP in cryotest.sigset_bits(proc_status(w.pid)["ShdPnd"]), "SIGSTOP pending")
    images = h.mkdir("img")
    r = h.dump(w.pid, images, leave_running=True)
    check("unexpected stop" not in r.stderr + (r.log or ""), "dump warned about a stop:\n" + r.describe())
    check_eq(proc_stat(w.pid)["state"], "T", "state after dump --leave-running")
    check_eq(h.show_json(images)["processes"][0].get("stop_signal"), signal.SIGSTOP, "stop signal in the image")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    rr = h.restore(images, expected_pid=w.pid)
    check_eq(proc_stat(rr.pid)["state"], "T", "state after restore")
    os.kill(rr.pid, signal.SIGCONT)
    h.wait_state(rr.pid, "S", comm="sleep")


# ---------------------------------------------------------------- ptrace

def test_traced_child_refused(h):
    w = h.start_workload("jobctl", "tracer")
    h.wait_ready(w)
    (child,) = children_of(w.pid)
    images = h.mkdir("img")
    for target in (w.pid, child):
        r = h.dump(target, images, expect_ok=False)
        check(r.rc != 0, "dump of pid %d with a traced process succeeded" % target)
        want = "pid %d is traced by pid %d (jobctl); detach it first" % (child, w.pid)
        check(want in r.stderr, "refusal names the tracer (%r):\n%s" % (want, r.describe()))
        check(not os.path.exists(os.path.join(images, "inventory.img")), "an inventory was written")
    check_eq(int(proc_status(child)["TracerPid"]), w.pid, "tracer after the refused dumps")
    h.verify_ok(w, exit=True, when="after the refused dumps")


def test_tracer_of_outside_refused(h):
    s = h.start_workload("sleep")
    w = h.start_workload("jobctl", "trace", str(s.pid))
    h.wait_ready(w)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0, "dump of a tracer succeeded")
    want = "pid %d traces pid %d (sleep)" % (w.pid, s.pid)
    check(want in r.stderr, "refusal names the tracee (%r):\n%s" % (want, r.describe()))
    check_eq(int(proc_status(s.pid)["TracerPid"]), w.pid, "tracer after the refused dump")
    h.verify_ok(w, exit=True, when="after the refused dump")


# ---------------------------------------------------------------- credentials

def start_creds(h):
    """The creds workload runs as nobody: its control directory (and the way
    to it) must let it in."""
    os.chmod(h.tmp_root, 0o711)
    ctl = h.mkdir("creds")
    os.chmod(ctl, 0o777)
    w = h.start("creds", [h.workload_path("creds"), ctl], ctl)
    h.wait_ready(w)
    st = proc_status(w.pid)
    check_eq(st["Uid"].split(), ["65534"] * 4, "uids of the creds workload")
    return w


def test_creds_order_kill(h):
    w = start_creds(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    dump_kill(h, w, images)
    rw = w.restored(h.restore(images, expected_pid=w.pid).pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_creds_order_leave_running_and_rewind(h):
    w = start_creds(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="after dump --leave-running")
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    for i in range(2):
        rw = w.restored(h.restore(images, expected_pid=w.pid).pid)
        h.verify_ok(rw, when="after restore %d" % i)
        h.cleanup_one(rw.pid)


# ---------------------------------------------------------------- per-process attributes

def set_loginuid(uid):
    """For preexec_fn: a new audit session for the child."""
    def fn():
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(uid))
    return fn


def cryo_unlike_the_image():
    """For preexec_fn of `cryo restore`: every inherited attribute the image
    does not have, so that only a restore that sets them passes."""
    set_loginuid(1234)()
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("300")
    os.sched_setaffinity(0, {0})
    IOPRIO_WHO_PROCESS, SYS_ioprio_set = 1, 251
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, (2 << 13) | 7)


def restore_with(h, images, preexec, expected_pid):
    """`cryo restore --detach` run with `preexec` (the harness's restore runs
    cryo as it is)."""
    pidfile = os.path.join(h.mkdir("pid"), "pid")
    h.tracked_pids.append(expected_pid)
    p = subprocess.run([h.cryo, "restore", "-D", images, "--detach", "--pidfile", pidfile],
                       preexec_fn=preexec, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=cryotest.CRYO_TIMEOUT)
    h.reap_orphans()
    check(p.returncode == 0, "restore from %s failed: %s" % (images, p.stderr))
    check_eq(int(cryotest.read_text(pidfile)), expected_pid, "restored pid")
    return expected_pid


def start_procattr(h, *args, preexec=None):
    ctl = h.mkdir("procattr")
    if preexec is None:
        w = h.start("procattr", [h.workload_path("procattr"), ctl] + list(args), ctl)
    else:
        with open(os.path.join(ctl, "stdout"), "wb") as out, open(os.path.join(ctl, "stderr"), "wb") as err:
            p = subprocess.Popen([h.workload_path("procattr"), ctl] + list(args), stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, cwd=ctl, start_new_session=True, close_fds=True,
                                 preexec_fn=preexec)
        h.tracked_pids.append(p.pid)
        h.popens[p.pid] = p
        w = cryotest.Workload("procattr", ctl, p.pid, p, None)
    h.wait_ready(w)
    return w


def test_proc_attrs_kill(h):
    w = start_procattr(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    dump_kill(h, w, images)
    rw = w.restored(restore_with(h, images, cryo_unlike_the_image, w.pid))
    h.verify_ok(rw, when="after restore by a cryo with other attributes")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_proc_attrs_leave_running_and_rewind(h):
    w = start_procattr(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="after dump --leave-running")
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    for i in range(2):
        rw = w.restored(h.restore(images, expected_pid=w.pid).pid)
        h.verify_ok(rw, when="after restore %d" % i)
        h.cleanup_one(rw.pid)


def test_audit_session_of_root_refused_at_restore(h):
    """A process with a loginuid has an audit session id no restore can give
    it but by inheritance: a cryo of another session refuses before it
    creates anything."""
    w = start_procattr(h, preexec=set_loginuid(1234))
    ses = int(cryotest.read_text("/proc/%d/sessionid" % w.pid))
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    r = h.restore(images, expect_ok=False)
    check(r.rc != 0, "restore into another audit session succeeded")
    want = "pid %d was in audit session %d (loginuid 1234)" % (w.pid, ses)
    check(want in r.stderr, "refusal names the audit session (%r):\n%s" % (want, r.describe()))
    check(cryotest.proc_stat(w.pid) is None, "a process was left behind")


def test_audit_session_same_session(h):
    """Dumped and restored from the workload's own audit session: the
    restored process has its loginuid and session id."""
    ctl = h.mkdir("procattr")
    pidfile = os.path.join(ctl, "restored.pid")
    script = os.path.join(ctl, "run.sh")
    with open(script, "w") as f:
        f.write("""setsid %(wl)s %(ctl)s </dev/null >%(ctl)s/stdout 2>%(ctl)s/stderr &
W=$!
for i in $(seq 1 1000); do test -e %(ctl)s/ready && break; sleep 0.01; done
echo $W > %(ctl)s/original.pid
%(cryo)s dump -t $W -D %(ctl)s/img || exit 1
wait $W
%(cryo)s restore -D %(ctl)s/img --detach --pidfile %(pidfile)s || exit 1
""" % {"wl": h.workload_path("procattr"), "ctl": ctl, "cryo": h.cryo, "pidfile": pidfile})
    p = subprocess.run(["sh", script], preexec_fn=set_loginuid(1234), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    h.reap_orphans()
    txt = cryotest.read_text(pidfile)
    if txt and txt.strip().isdigit():
        h.tracked_pids.append(int(txt))
    check(p.returncode == 0, "dump and restore in one audit session: %s%s" % (p.stdout, p.stderr))
    rw = cryotest.Workload("procattr", ctl, int(txt), None, None)
    check_eq(cryotest.read_text("/proc/%d/loginuid" % rw.pid), "1234", "restored loginuid")
    h.verify_ok(rw, exit=True, when="after a restore in its audit session")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_audit_session_of_child_refused(h):
    w = start_procattr(h, "new-session")
    (child,) = children_of(w.pid)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0, "dump of a tree with two audit sessions succeeded")
    want = "pid %d is in audit session" % child
    check(want in r.stderr and "its parent pid %d" % w.pid in r.stderr,
          "refusal names the audit sessions (%r):\n%s" % (want, r.describe()))
    h.verify_ok(w, exit=True, when="after the refused dump")


# ---------------------------------------------------------------- PID namespace

def test_pid2_of_a_pid_namespace(h):
    """In a new PID namespace the first process after init is pid 2: it is
    not kthreadd. cryo runs inside (its /proc is the namespace's)."""
    ctl = h.mkdir("pidns")
    script = os.path.join(ctl, "run.sh")
    with open(script, "w") as f:
        f.write("""set -e
%(counter)s %(ctl)s/w >/dev/null 2>&1 </dev/null &
test "$!" = 2
mkdir -p %(ctl)s/w
for i in $(seq 1 500); do test -e %(ctl)s/w/ready && break; sleep 0.01; done
%(cryo)s dump -t 2 -D %(ctl)s/img -R
echo dumped
kill -9 2
""" % {"counter": h.workload_path("counter"), "ctl": ctl, "cryo": h.cryo})
    os.makedirs(os.path.join(ctl, "w"))
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", script],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    check("kernel thread" not in p.stderr, "pid 2 of a PID namespace refused as a kernel thread: %s" % p.stderr)
    check(p.returncode == 0 and "dumped" in p.stdout,
          "dump of pid 2 inside a PID namespace (status %d): %s%s" % (p.returncode, p.stdout, p.stderr))


if __name__ == "__main__":
    sys.exit(cryotest.main([
        test_stopped_tree_kill,
        test_stopped_tree_leave_running,
        test_stopped_tree_rewind,
        test_stopped_root,
        test_traced_child_refused,
        test_tracer_of_outside_refused,
        test_creds_order_kill,
        test_creds_order_leave_running_and_rewind,
        test_proc_attrs_kill,
        test_proc_attrs_leave_running_and_rewind,
        test_audit_session_of_root_refused_at_restore,
        test_audit_session_same_session,
        test_audit_session_of_child_refused,
        test_pid2_of_a_pid_namespace,
    ]))
