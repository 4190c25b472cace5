"""faultlib: interrupting and killing cryo in the middle of a dump, and
checking that the original was not harmed.  Used by test_interrupt.py (a
bounded set of points) and bench/bench_interrupt.py (long random campaigns).

cryo passes a fault point at every ptrace request, remote system call and
step of a dump; with CRYO_FAULT_POINT=N it raises CRYO_FAULT_SIGNAL on itself
at the Nth (CRYO_FAULT_POINT=0 only counts and prints "fault points passed:
N" at the end).

After each interrupted dump (check_after):
  - the original tree is alive: every process, not stopped, not traced
    (TracerPid 0 for every thread), every thread with its own signal mask,
    and it passes its own verification;
  - or, in kill mode only, once the kill had begun: every process of the tree
    is gone, the image is complete (cryo show reads it) and restorable (the
    restored tree passes its verification, and becomes the next original);
  - the image directory: after SIGINT (and the other catchable signals)
    removed, unless the dump had completed; after SIGKILL absent, empty (cryo
    died between the mkdir and the marker), complete, or refused by `cryo
    show` as "incomplete image: the dump did not finish".
"""
import os
import re
import shutil
import signal
import subprocess
import time

import cryotest
from cryotest import check, fail, proc_stat, read_text

# Every cryo a fault test starts with run_env() carries this variable; its
# janitor, a fork of cryo, shows the same /proc/PID/environ. Janitors of cryo
# runs this test did not start (other tests on the machine) are not counted.
RUN_TAG = "CRYO_FAULT_TEST_RUN=%d" % os.getpid()


def run_env(env=None):
    """`env` plus RUN_TAG, for run_cryo."""
    key, value = RUN_TAG.split("=")
    return dict(env or {}, **{key: value})


def janitors():
    """Pids of the janitors of cryo runs started with run_env()."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (read_text("/proc/%s/comm" % name) or "").strip() == "cryo-janitor":
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if RUN_TAG.encode() in environ:
                out.append(int(name))
    return out


def wait_janitors_done(what, timeout=10.0):
    """A killed restore's janitor kills what the restore made after cryo is
    gone: wait (bounded) until it finished."""
    deadline = time.monotonic() + timeout
    while janitors():
        if time.monotonic() > deadline:
            fail("%s: the janitor (pids %s) still runs %.0f s later" % (what, janitors(), timeout))
        time.sleep(0.02)

INCOMPLETE = "incomplete image: the dump did not finish"

# workload name -> (argv tail, ready timeout)
WORKLOADS = {
    "tree": (["4"], 30),
    "threads": (["7"], 20),
    "mem64": (["64"], 30),  # the cow workload with 64 MiB
}


def start(h, kind):
    args, timeout = WORKLOADS[kind]
    w = h.start_workload("cow" if kind == "mem64" else kind, *args)
    h.wait_ready(w, timeout=timeout)
    h.verify_ok(w, when="before any dump")
    return w


def tree_pids(root):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        st = proc_stat(pid)
        if st is None or st["state"] == "Z":
            continue
        out.append(pid)
        for tid in os.listdir("/proc/%d/task" % pid) if os.path.isdir("/proc/%d/task" % pid) else []:
            todo.extend(int(k) for k in read_text("/proc/%d/task/%s/children" % (pid, tid), "").split())
    return sorted(out)


def thread_state(pid):
    """tid -> (state, TracerPid, SigBlk) of every thread of pid."""
    out = {}
    tasks = "/proc/%d/task" % pid
    for tid in os.listdir(tasks) if os.path.isdir(tasks) else []:
        st = read_text("%s/%s/status" % (tasks, tid), "")
        f = dict(line.split(":\t", 1) for line in st.splitlines() if ":\t" in line)
        if f:
            out[int(tid)] = (f.get("State", "?")[:1], f.get("TracerPid", "?").strip(), f.get("SigBlk", "?").strip())
    return out


def snapshot(root):
    """pid -> {tid: SigBlk} of the tree."""
    return {pid: {tid: v[2] for tid, v in thread_state(pid).items()} for pid in tree_pids(root)}


def free_of_cryo(before, timeout=5.0):
    """None if every process and thread of `before` is running on (not
    stopped, untraced) with its own mask, else what differs.  A thread
    finishing a remote call of a killed cryo puts its own mask back when it
    next runs: bounded wait."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        for pid, masks in before.items():
            now = thread_state(pid)
            if not now:
                problems.append("pid %d is gone" % pid)
                continue
            for tid, mask in masks.items():
                if tid not in now:
                    problems.append("task %d of pid %d is gone" % (tid, pid))
                    continue
                state, tracer, blk = now[tid]
                if state in ("T", "t", "Z", "X"):
                    problems.append("task %d state %s" % (tid, state))
                if tracer != "0":
                    problems.append("task %d traced by %s" % (tid, tracer))
                if blk != mask:
                    problems.append("task %d mask %s, its own %s" % (tid, blk, mask))
        if not problems or time.monotonic() > deadline:
            return "; ".join(problems) or None
        time.sleep(0.02)


def count_points(h, w, images, leave_running):
    """A whole dump counting its fault points; returns (points, original alive)."""
    r = dump(h, w, images, leave_running, {"CRYO_FAULT_POINT": "0"})
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    m = re.search(r"fault points passed: (\d+)", r.stderr)
    check(m is not None, "no fault point count in cryo's stderr: %r" % r.stderr[-500:])
    return int(m.group(1))


def dump(h, w, images, leave_running, env):
    # --force: these tests dump again and again into one directory, and over
    # older images on purpose.
    args = ["dump", "-t", str(w.pid), "-D", images, "--force"]
    if leave_running:
        args.append("--leave-running")
    return h.run_cryo(args, env=env, tag="dump-fault")


def fault_dump(h, w, images, leave_running, point, sig):
    return dump(h, w, images, leave_running, {"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": sig})


def timed_dump(h, w, images, leave_running, delay, sig):
    """A dump that gets SIG`sig` from outside after `delay` seconds (if still
    running)."""
    args = [h.cryo, "dump", "-t", str(w.pid), "-D", images, "--force"] + (["--leave-running"] if leave_running else [])
    err = os.path.join(h.tmp_root, "timed.err")
    with open(err, "wb") as e:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e, close_fds=True)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(getattr(signal, "SIG" + sig))
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)
        fail("cryo did not finish within 60 s of SIG%s" % sig)
    h.reap_orphans()
    return cryotest.CryoResult(args, rc, "", read_text(err, ""), None)


def image_state(h, images):
    """'absent', 'empty', 'complete' or 'incomplete' (what `cryo show` says)."""
    if not os.path.exists(images):
        return "absent"
    if not os.listdir(images):
        return "empty"  # a SIGKILL between the directory's creation and its marker's
    r = h.run_cryo(["show", images], log=False, tag="show")
    if r.rc == 0:
        return "complete"
    if INCOMPLETE in r.stderr:
        return "incomplete"
    fail("cryo show of an interrupted dump's image neither reads it nor calls it incomplete:\n%s" % r.describe())


def check_after(h, w, before, images, r, sig, leave_running, what):
    """Checks one interrupted dump (module doc).  Returns the workload to go
    on with: w, or the restored tree if the kill had gone through."""
    root_alive = cryotest.pid_alive(w.pid)
    state = image_state(h, images)
    if sig != "KILL" and r.rc != 0:
        check(r.rc == -getattr(signal, "SIG" + sig), "%s: cryo should die by SIG%s after undoing, rc %s\n%s"
              % (what, sig, r.rc, r.describe()))
        # (Silent only if the signal came before cryo's main() could block it.)
        check("dump interrupted: pid %d left running" % w.pid in r.stderr or not r.stderr.strip(),
              "%s: no 'dump interrupted: pid %d left running' message\n%s" % (what, w.pid, r.describe()))
        check(state == "absent", "%s: the interrupted dump left its image (%s)" % (what, state))
    if root_alive:
        problem = free_of_cryo(before)
        check(problem is None, "%s: the original was harmed: %s\n%s" % (what, problem, r.describe()))
        h.verify_ok(w, when=what)
        shutil.rmtree(images, ignore_errors=True)
        return w
    # The original is gone: only a kill mode dump whose image was complete may do that.
    check(not leave_running, "%s: the original (pid %d) died in a --leave-running dump\n%s"
          % (what, w.pid, r.describe()))
    check(state == "complete", "%s: the original is dead but the image is %s\n%s" % (what, state, r.describe()))
    if w.popen is not None:
        h.reap_original(w)
    cryotest.wait_pids_gone(list(before))
    rs = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(rs.pid)
    h.verify_ok(rw, when=what + ", restored")
    shutil.rmtree(images, ignore_errors=True)
    return rw


def interrupted_dump(h, w, images, leave_running, sig, what, point=None, delay=None):
    """One dump of w interrupted by SIG`sig` at fault `point` or after
    `delay` seconds, then check_after; returns the workload to go on with."""
    before = snapshot(w.pid)
    if point is not None:
        r = fault_dump(h, w, images, leave_running, point, sig)
    else:
        r = timed_dump(h, w, images, leave_running, delay, sig)
    return check_after(h, w, before, images, r, sig, leave_running, what)


def kill_tree(h, root):
    """SIGKILL a whole tree (its processes reparent to the harness when its
    root, a subreaper, goes first) and wait until every pid is gone."""
    pids = tree_pids(root)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cryotest.wait_pids_gone(pids)


def spread(total, k):
    """k fault points spread over 1..total, the last ones included."""
    if total <= k:
        return list(range(1, total + 1))
    pts = {1 + round(i * (total - 1) / (k - 1)) for i in range(k)}
    pts |= {total - 1, total}
    return sorted(pts)
