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
import time

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


def run_script(h, argv, preexec=None, timeout=120.0):
    """Runs a test script to completion, reaping meanwhile what is orphaned
    to the harness (a dumped tree's children), so their pids come free."""
    p = subprocess.Popen(argv, preexec_fn=preexec, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        h.reap_orphans()
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            cryotest.fail("%s did not finish within %.0fs" % (" ".join(argv), timeout))
        time.sleep(0.01)
    out, err = p.communicate()
    h.reap_orphans()
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def verify_and_exit(h, w, when, exit_when):
    h.verify_ok(w, when=when)
    h.verify_ok(w, exit=True, when=exit_when)
    check_eq(h.wait_exit(w), ("exit", 0), "exit status " + exit_when)


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
    verify_and_exit(h, w.restored(rr.pid), "after restore", "after restore (SIGCONT)")


def test_stopped_tree_leave_running(h):
    w, kids = start_jobctl(h)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, leave_running=True)
    check("unexpected stop" not in r.stderr + (r.log or ""), "dump warned about a stop:\n" + r.describe())
    # Still stopped, not resumed by cryo, and the stop reports are as they were.
    check_stopped_kids(kids, "after dump --leave-running")
    verify_and_exit(h, w, "after dump --leave-running", "after dump --leave-running (SIGCONT)")


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
    h.dump(w.pid, images, force=True)  # the kill-mode image replaces the first
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


def kill_mode_round(h, w, restore=None):
    """Verify, kill-mode dump, restore (by `restore(images)` returning the
    pid, else the harness's), verify twice, exit 0."""
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    dump_kill(h, w, images)
    pid = restore(images) if restore else h.restore(images, expected_pid=w.pid).pid
    verify_and_exit(h, w.restored(pid), "after restore", "after restore (exit)")


def leave_running_then_rewind(h, w):
    """A single-process workload: leave-running dump, verify the original,
    then restore the image twice."""
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="after dump --leave-running")
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    for i in range(2):
        rw = w.restored(h.restore(images, expected_pid=w.pid).pid)
        h.verify_ok(rw, when="after restore %d" % i)
        h.cleanup_one(rw.pid)


def test_creds_order_kill(h):
    kill_mode_round(h, start_creds(h))


def test_creds_order_leave_running_and_rewind(h):
    leave_running_then_rewind(h, start_creds(h))


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
    """Restored by a cryo whose own attributes differ from the image's."""
    w = start_procattr(h)
    kill_mode_round(h, w, lambda images: restore_with(h, images, cryo_unlike_the_image, w.pid))


def test_proc_attrs_leave_running_and_rewind(h):
    leave_running_then_rewind(h, start_procattr(h))


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
    p = run_script(h, ["sh", script], preexec=set_loginuid(1234))
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


# ---------------------------------------------------------------- cgroups

def parse_cgroups(text):
    """hierarchy ('' for cgroup2) -> path, from /proc/PID/cgroup text."""
    out = {}
    for line in (text or "").splitlines():
        _, hier, path = line.split(":", 2)
        out[hier] = path
    return out


def cgroups_of(pid):
    return parse_cgroups(cryotest.read_text("/proc/%s/cgroup" % pid))


def cgroup_mounts():
    """hierarchy -> (root, mount point) of the mounts of /proc/self/mountinfo."""
    out = {}
    for line in cryotest.read_text("/proc/self/mountinfo").splitlines():
        w = line.split()
        dash = w.index("-")
        fstype, opts = w[dash + 1], w[dash + 3].split(",")
        if fstype == "cgroup2":
            out.setdefault("", (w[3], w[4]))
        elif fstype == "cgroup":
            ctrls = [o for o in opts if o not in ("rw", "ro") and "=" not in o or o.startswith("name=")]
            ctrls = [o for o in ctrls if not o.startswith(("release_agent", "clone_children", "noprefix", "xattr",
                                                           "cpuset_v2_mode", "favordynmods", "nsdelegate"))]
            out.setdefault(",".join(ctrls), (w[3], w[4]))
    return out


class Cgroups:
    """Cgroup directories a test makes. remove() kills what the test left in
    them (only the harness's descendants) and removes every one of them."""

    def __init__(self, h):
        self.h = h
        self.mounts = cgroup_mounts()
        self.made = []

    def dir(self, hier, path):
        root, mp = self.mounts[hier]
        check(path.startswith(root), "cgroup %s of %s is not under its mount's root %s" % (path, hier, root))
        return os.path.normpath(mp + "/" + path[len(root):])

    def make(self, hier, path):
        d = self.dir(hier, path)
        todo = []
        while not os.path.isdir(d):
            todo.append(d)
            d = os.path.dirname(d)
        for d in reversed(todo):
            os.mkdir(d)
            self.made.append(d)
            if "cpuset" in hier.split(","):  # a v1 cpuset needs CPUs and memory nodes
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(d, f), "w") as out:
                        out.write(cryotest.read_text(os.path.join(os.path.dirname(d), f)).strip())
        return path

    def move(self, pid, hier, path):
        with open(os.path.join(self.dir(hier, path), "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def rmdir_all(self, dirs, timeout=5.0):
        for d in sorted(set(dirs), key=len, reverse=True):
            if not os.path.isdir(d):
                continue
            for pid in (cryotest.read_text(os.path.join(d, "cgroup.procs"), "") or "").split():
                self.h.cleanup_one(int(pid))
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    check(time.monotonic() < deadline, "cgroup %s cannot be removed" % d)
                    time.sleep(0.01)

    def remove(self):
        self.rmdir_all(self.made)


def subdirs(d):
    """Every directory below d (cgroups below a cgroup)."""
    return [os.path.join(top, n) for top, names, _ in os.walk(d) for n in names]


def place_cgroups_tree(h, cg):
    """A cgroups workload whose root and child are spread over the
    hierarchies mounted here (at least one is required). Returns the
    workload, the child and the planned {(pid, hierarchy): path}."""
    ctl = h.mkdir("cgroups")
    w = h.start("cgroups", [h.workload_path("cgroups"), ctl], ctl)
    for _ in range(500):
        kids = children_of(w.pid)
        if kids:
            break
        time.sleep(0.01)
    (child,) = kids
    mine = cgroups_of(os.getpid())
    tag = "cryo-test-%d-%d" % (os.getpid(), h.counter)
    plan = {}
    used = []
    for hier, layout in (("memory", ("root", "child")), ("cpu", ("root", None)), ("cpuset", (None, "c")),
                         ("name=systemd", ("r", None)), ("", ("a", "b"))):
        if hier not in cg.mounts or hier not in mine:
            continue
        used.append(hier or "cgroup2")
        base = mine[hier].rstrip("/")
        for pid, leaf in zip((w.pid, child), layout):
            if leaf:
                path = cg.make(hier, "%s/%s/%s" % (base, tag, leaf))
                cg.move(pid, hier, path)
                plan[(pid, hier)] = path
    check(plan, "no cgroup hierarchy is mounted here")
    h.note("hierarchies used: %s" % ", ".join(used))
    with open(os.path.join(ctl, "placed"), "w"):
        pass
    h.wait_ready(w)
    return w, child, plan


def check_placement(plan, when):
    for (pid, hier), path in plan.items():
        check_eq(cgroups_of(pid).get(hier), path, "cgroup of pid %d in %s %s" % (pid, hier or "cgroup2", when))


def test_cgroups_kill_and_rewind(h):
    cg = Cgroups(h)
    try:
        w, child, plan = place_cgroups_tree(h, cg)
        before = {pid: cgroups_of(pid) for pid in (w.pid, child)}
        h.verify_ok(w, when="before dump")
        images = h.mkdir("img")
        dump_kill(h, w, images)
        h.check_feature(images, "cgroups")
        cg.rmdir_all(cg.made)  # the restore creates them again
        for i in range(2):
            rr = h.restore(images, expected_pid=w.pid)
            check_eq({pid: cgroups_of(pid) for pid in (w.pid, child)}, before, "cgroups after restore %d" % i)
            check_placement(plan, "after restore %d" % i)
            h.verify_ok(w.restored(rr.pid), when="after restore %d" % i)
            for pid in (rr.pid, child):
                h.cleanup_one(pid)
    finally:
        cg.remove()


def test_cgroups_removed_when_restore_killed(h):
    """cryo killed (SIGKILL) once the restore made the tree's cgroups: the
    janitor removes them (cryo's own cleanup never runs), and no process of
    the image is left; the image then restores."""
    cg = Cgroups(h)
    try:
        w, child, plan = place_cgroups_tree(h, cg)
        images = h.mkdir("img")
        dump_kill(h, w, images)
        cg.rmdir_all(cg.made)  # the restore creates them again
        r = h.run_cryo(["restore", "-D", images, "--detach"], timeout=30,
                       env={"CRYO_RESTORE_FAULT_POINT": "objects:KILL"})
        check(r.rc == -signal.SIGKILL, "cryo was not killed at the fault point:\n" + r.describe())
        deadline = time.monotonic() + 10
        while True:
            left = [d for d in cg.made if os.path.isdir(d)]
            alive = [p for p in (w.pid, child) if cryotest.pid_alive(p)]
            if not left and not alive:
                break
            check(time.monotonic() < deadline, "left behind by the killed restore: cgroups %s, processes %s" % (left, alive))
            time.sleep(0.05)
        rr = h.restore(images, expected_pid=w.pid)
        check_placement(plan, "after restoring again")
        for pid in (rr.pid, child):
            h.cleanup_one(pid)
    finally:
        cg.remove()


def test_cgroups_leave_running(h):
    cg = Cgroups(h)
    try:
        w, child, plan = place_cgroups_tree(h, cg)
        h.dump(w.pid, h.mkdir("img"), leave_running=True)
        check_placement(plan, "after dump --leave-running")
        h.verify_ok(w, exit=True, when="after dump --leave-running")
        check_eq(h.wait_exit(w), ("exit", 0), "exit status")
    finally:
        cg.remove()


def test_cgroup_root_option(h):
    """--cgroup-root places the tree below another cgroup, per hierarchy or
    for all; a failed restore removes the cgroups it created."""
    cg = Cgroups(h)
    other_dir = None
    try:
        w, child, plan = place_cgroups_tree(h, cg)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        mine = cgroups_of(os.getpid())
        hier = "" if "" in cg.mounts else next(iter(hier for (_, hier) in plan))
        other = cg.make(hier, "%s/cryo-test-%d-alt" % (mine[hier].rstrip("/"), os.getpid()))
        other_dir = cg.dir(hier, other)
        # The original still holds the pids: the restore fails after it made
        # the cgroups below `other`, and must remove them.
        args = ["restore", "-D", images, "--cgroup-root", "%s:%s" % (hier or "cgroup2", other), "--detach"]
        r = h.run_cryo(args, timeout=30)
        check(r.rc != 0 and "in use" in r.stderr, "restore while the pids are in use:\n" + r.describe())
        check_eq(subdirs(other_dir), [], "cgroups left below %s after a failed restore" % other)
        h.kill_and_reap(w)
        h.cleanup_one(child)
        cryotest.wait_pids_gone([w.pid, child])
        cg.rmdir_all([d for d in cg.made if not d.startswith(other_dir)])
        r = h.run_cryo(args + ["--pidfile", os.path.join(h.tmp_root, "cgroot.pid")], timeout=30)
        h.tracked_pids += [w.pid, child]
        check(r.rc == 0, "restore with --cgroup-root:\n" + r.describe())
        base = mine[hier].rstrip("/")
        for (pid, hh), path in plan.items():
            want = other + path[len(base):] if hh == hier else path
            check_eq(cgroups_of(pid).get(hh), want, "cgroup of pid %d in %s" % (pid, hh or "cgroup2"))
    finally:
        for pid in children_of(os.getpid()):
            if pid in h.tracked_pids:
                h.cleanup_one(pid)
        if other_dir:
            cg.rmdir_all(subdirs(other_dir))
        cg.remove()


def test_thread_in_another_cgroup_refused(h):
    cg = Cgroups(h)
    try:
        hier = "cpu" if "cpu" in cg.mounts else ""
        w = h.start_workload("threads", "4")
        h.wait_ready(w)
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % w.pid) if int(t) != w.pid)
        mine = cgroups_of(os.getpid())[hier].rstrip("/")
        path = cg.make(hier, "%s/cryo-test-%d-thread" % (mine, os.getpid()))
        if hier:
            with open(os.path.join(cg.dir(hier, path), "tasks"), "w") as f:  # v1: one thread
                f.write(str(tids[0]))
        else:
            with open(os.path.join(cg.dir(hier, path), "cgroup.type"), "w") as f:
                f.write("threaded")
            with open(os.path.join(cg.dir(hier, path), "cgroup.threads"), "w") as f:
                f.write(str(tids[0]))
        r = h.dump(w.pid, h.mkdir("img"), expect_ok=False)
        want = "task %d of pid %d is in cgroup %s" % (tids[0], w.pid, path)
        check(r.rc != 0 and want in r.stderr, "refusal names the thread (%r):\n%s" % (want, r.describe()))
        h.verify_ok(w, when="after the refused dump")
        h.cleanup_one(w.pid)
    finally:
        cg.remove()


def test_cgroups_v2_only(h):
    """Where /sys/fs/cgroup is a cgroup2 mount and nothing else (most
    distributions): a mount namespace with the v1 hierarchies unmounted."""
    ctl = h.mkdir("cgv2")
    tag = "cryo-test-%d-v2" % os.getpid()
    mine = cgroups_of(os.getpid())[""].rstrip("/")
    path = "%s/%s/a" % (mine, tag)
    script = os.path.join(ctl, "run.sh")
    with open(script, "w") as f:
        f.write("""set -e
umount -l /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup
test "$(grep -c ' - cgroup ' /proc/self/mountinfo || true)" = 0
mkdir -p /sys/fs/cgroup%(path)s
setsid %(wl)s %(ctl)s </dev/null >%(ctl)s/stdout 2>%(ctl)s/stderr &
W=$!
echo $W > /sys/fs/cgroup%(path)s/cgroup.procs
sleep 0.1
for c in $(cat /proc/$W/task/*/children); do echo $c > /sys/fs/cgroup%(path)s/cgroup.procs; done
touch %(ctl)s/placed
for i in $(seq 1 1000); do test -e %(ctl)s/ready && break; sleep 0.01; done
%(cryo)s dump -t $W -D %(ctl)s/img
wait $W || true
rmdir /sys/fs/cgroup%(path)s /sys/fs/cgroup%(base)s
%(cryo)s restore -D %(ctl)s/img --detach --pidfile %(ctl)s/restored.pid
grep '^0::' /proc/$W/cgroup
""" % {"path": path, "base": os.path.dirname(path), "wl": h.workload_path("cgroups"), "ctl": ctl, "cryo": h.cryo})
    cg = Cgroups(h)
    unified = cg.dir("", path)
    try:
        p = run_script(h, ["unshare", "-m", "--propagation", "private", "sh", script])
        txt = cryotest.read_text(os.path.join(ctl, "restored.pid"))
        if txt and txt.strip().isdigit():
            h.tracked_pids.append(int(txt))
        check(p.returncode == 0, "v2-only dump and restore: %s%s" % (p.stdout, p.stderr))
        pid = int(txt)
        check_eq(p.stdout.strip(), "0::" + path, "restored cgroup (from inside)")
        check_eq(cgroups_of(pid)[""], path, "restored cgroup")
        (child,) = children_of(pid)
        check_eq(cgroups_of(child)[""], path, "restored child's cgroup")
        h.verify_ok(cryotest.Workload("cgroups", ctl, pid, None, None), exit=True, when="after a v2-only restore")
        check_eq(h.wait_exit(pid), ("exit", 0), "restored exit status")
    finally:
        cg.rmdir_all([unified, os.path.dirname(unified)])


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
        test_cgroups_kill_and_rewind,
        test_cgroups_removed_when_restore_killed,
    test_cgroups_leave_running,
        test_cgroup_root_option,
        test_thread_in_another_cgroup_refused,
        test_cgroups_v2_only,
        test_pid2_of_a_pid_namespace,
    ]))
