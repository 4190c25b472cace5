#!/usr/bin/python3
"""End-to-end tests of `cryo run`: a program started in fresh namespaces (a
PID namespace of its own whose pid 1 is cryo's init, outside the tree; a
mount namespace with that namespace's /proc; IPC and UTS namespaces on
demand), detached, its host pid printed. Its tree is dumped from inside its
PID namespace and restored with --pidns new, twice, in kill and
leave-running (rewind beside the original) modes, the workload verifying
itself (its pid inside stays 2). Then the refusals, by name: a mount of the
tree's own, an orphan reparented to the namespace's init, pid 1 of a
namespace, a restore without --pidns new.

Run: test_run.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_stat, read_text  # noqa: E402
from test_pidns import PIDNS, ns_pids, restore_copy, verify_counting  # noqa: E402


def cryo_run(h, argv, ns=None, ctl=None, name="run"):
    """`cryo run [--ns NS] --pidfile F -- argv` with stdout/stderr of the
    program in ctl (its cwd): a Workload with the program's host pid, and its
    init's host pid (both tracked for cleanup)."""
    ctl = ctl or h.mkdir(name)
    pidfile = os.path.join(ctl, "run.pid")
    args = [h.cryo, "run", "--pidfile", pidfile] + (["--ns", ns] if ns else []) + ["--"] + argv
    # The program inherits cryo's stdio: cryo's line with the pid comes first.
    with open(os.path.join(ctl, "stdout"), "wb") as out, open(os.path.join(ctl, "stderr"), "wb") as err:
        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ctl, timeout=30)
    check_eq(p.returncode, 0, "cryo run status (stderr: %s)" % read_text(os.path.join(ctl, "stderr"), ""))
    pid = int(read_text(pidfile).strip())
    printed = read_text(os.path.join(ctl, "stdout"), "").splitlines()
    check(str(pid) in printed, "cryo run prints the pid of its pidfile, %d: %r" % (pid, printed[:5]))
    init = proc_stat(pid)["ppid"]
    h.tracked_pids += [pid, init]
    check_eq(proc_stat(init)["ppid"], os.getpid(), "the init is reparented to the harness (subreaper)")
    w = cryotest.Workload(name, ctl, pid, None, argv)
    return w, init


def wait_ready_inside(h, w, inside_pid=2, timeout=20.0):
    """The workload's ready file names its pid inside its namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        txt = read_text(w.path("ready"))
        if txt and txt.strip():
            check_eq(int(txt.strip()), inside_pid, "pid in the ready file (inside the namespace)")
            return
        check(pid_alive(w.pid), "%s exited before ready: %s" % (w.name, w.stderr()))
        time.sleep(0.01)
    fail("%s not ready within %.0fs" % (w.name, timeout))


def check_fresh(pid, kinds):
    for kind in kinds:
        check(os.readlink("/proc/%d/ns/%s" % (pid, kind)) != os.readlink("/proc/self/ns/%s" % kind),
              "pid %d is in the host's %s namespace" % (pid, kind))


def started_counter(h, ns=None):
    w, init = cryo_run(h, [h.workload_path("counter"), h.mkdir("counter")], ns=ns)
    w.ctl = w.argv[1]
    check_eq(ns_pids(w.pid), [w.pid, 2], "NSpid of the program (host pid, 2 inside)")
    check_eq(ns_pids(init), [init, 1], "NSpid of its init")
    st = read_text("/proc/%d/root/proc/2/stat" % w.pid)
    f = st[st.rindex(")") + 2:].split()
    check_eq((int(f[1]), int(f[2]), int(f[3])), (1, 2, 2), "ppid, pgid, sid inside (its own session)")
    check_fresh(w.pid, ["pid", "mnt"])
    wait_ready_inside(h, w)
    h.verify_ok(w, when="started by cryo run")
    return w, init


def test_run_dump_restore_twice(h):
    """cryo run counter; dump (kill) and restore --pidns new, twice: the
    program keeps counting with pid 2 inside; the original's init exits
    with it; the last copy exits 0 and so does its init."""
    w, init = started_counter(h)
    # cryo check -t classifies the tree from inside its namespace, as the dump does.
    r = h.run_cryo(["check", "-t", str(w.pid)])
    check(r.rc == 0 and "where it is pid 2" in r.stdout and "can be checkpointed" in r.stdout,
          "check -t of a cryo run tree:\n%s" % r.describe())
    for round_ in range(2):
        images = h.mkdir("img%d" % round_)
        h.dump(w.pid, images)
        # An init cannot die by its own signals: 128+SIGKILL, its program's end.
        check_eq(h.wait_exit(init), ("exit", 128 + signal.SIGKILL), "init status once its program was dumped")
        check("pid-ns" in str(h.show_json(images)), "the image has the feature pid-ns")
        r = h.restore(images, extra=PIDNS)
        check_eq(ns_pids(r.pid), [r.pid, 2], "NSpid of the copy, round %d" % round_)
        init = proc_stat(r.pid)["ppid"]
        w = w.restored(r.pid)
        verify_counting(h, w, when="restored, round %d" % round_)
    verify_counting(h, w, exit=True, when="exit")
    check_eq(h.wait_exit(init), ("exit", 0), "init status once the copy exited 0")


def test_run_rewind_beside_original(h):
    """cryo run with its own IPC and UTS namespaces; dump --leave-running,
    restore --pidns new beside the running original; both verify; then the
    copy is dumped again (kill) and restored."""
    w, init = started_counter(h, ns="pid,mnt,ipc,uts")
    check_fresh(w.pid, ["ipc", "uts"])
    stdout = os.readlink("/proc/%d/fd/1" % w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    # The image's pid is 2 (inside), whatever the original's host pid. The
    # original goes on printing a count every 200 ms into the stdout file the
    # copy shares: a change the user expects, said with --allow-changed (the
    # restore refused it whenever a count fell between the dump and its check).
    copy, r, copy_init = restore_copy(h, cryotest.Workload(w.name, w.ctl, 2, None, w.argv), images,
                                      extra=["--allow-changed", stdout])
    check_fresh(copy.pid, ["pid", "mnt", "ipc", "uts"])
    verify_counting(h, copy, when="copy")
    verify_counting(h, w, when="original beside its copy")
    # A mount of the copy's own is refused (test_run_refusals): the test's
    # bind mount goes before the copy is dumped, with the original.
    h.cleanup_one(w.pid)
    check_eq(h.wait_exit(init), ("exit", 128 + signal.SIGKILL), "the original's init once it was killed")
    p = subprocess.run(["nsenter", "-t", str(copy.pid), "-m", "umount", w.ctl], capture_output=True, timeout=10)
    check_eq(p.returncode, 0, "umount in the copy's namespace: %s" % p.stderr.decode(errors="replace"))
    images2 = h.mkdir("img2")
    h.dump(copy.pid, images2)
    check_eq(h.wait_exit(copy_init), ("exit", 128 + signal.SIGKILL), "the copy's init once it was dumped")
    r2 = h.restore(images2, extra=PIDNS)
    again = cryotest.Workload(w.name, w.ctl, r2.pid, None, w.argv)
    verify_counting(h, again, when="copy of the copy")
    verify_counting(h, again, exit=True, when="exit")


def test_run_refusals(h):
    """A tree of cryo run refused by name, before anything is written: a
    mount cryo does not make again (ramfs), an orphan of the namespace outside the tree;
    pid 1 of an `unshare --pid --fork`. (A network namespace of its own is
    restored: test_netns.py.)"""
    mnt = h.mkdir("mnt")
    w, _ = cryo_run(h, ["/bin/sh", "-c", "mount -t ramfs cryo-e2e-ramfs %s && exec sleep 1000" % mnt])
    h.wait_state(w.pid, "S", comm="sleep")
    h.dump_refused(w.pid, ["mount namespace", mnt + " (ramfs cryo-e2e-ramfs) cannot be made again"])
    w, _ = cryo_run(h, ["/bin/sh", "-c", "(sleep 1000 &); exec sleep 1000"])
    h.wait_state(w.pid, "S", comm="sleep")
    h.dump_refused(w.pid, ["(sleep) lives in the tree's PID namespace outside the tree"])
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "/bin/sleep", "1000"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    h.tracked_pids.append(p.pid)
    h.popens[p.pid] = p
    for _ in range(500):
        kids = read_text("/proc/%d/task/%d/children" % (p.pid, p.pid), "").split()
        if kids and proc_stat(int(kids[0]))["comm"] == "sleep":
            break
        time.sleep(0.01)
    sleeper = int(kids[0])
    h.dump_refused(sleeper, ["is pid 1 of its PID namespace"])
    r = h.run_cryo(["run", "--ns", "pid,ipc", "--", "/bin/true"])
    check(r.rc == 1 and "--ns must name pid and mnt" in r.message, "cryo run without mnt: %s" % r.describe())


def test_restore_needs_pidns_new(h):
    """An image of a tree in its own PID namespace is restored only with
    --pidns new (its pids are that namespace's): refused without, by name."""
    w, init = started_counter(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.wait_exit(init)
    r = h.restore(images, expect_ok=False)
    check(r.rc == 1 and "restore it with --pidns new" in r.message, "restore without --pidns new: %s" % r.describe())


TESTS = [
    test_run_dump_restore_twice,
    test_run_rewind_beside_original,
    test_run_refusals,
    test_restore_needs_pidns_new,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
