#!/usr/bin/python3
"""End-to-end tests of file locks (POSIX record locks, OFD locks, flock,
leases), fd owners (F_SETOWN / F_SETSIG with O_ASYNC: SIGIO after restore) and
fd tables / fs_structs shared between processes (CLONE_FILES / CLONE_FS).

The locks workload verifies all of it itself, from a separate process (F_GETLK,
F_OFD_GETLK, flock from new descriptions, /proc/locks), in kill, leave-running
and rewind modes. The rest: what cannot be restored is refused at dump by name
with the tree untouched; a restore that cannot take a lock back fails and
leaves nothing behind.

Run: test_locks.py --cryo PATH --workloads DIR [NAME ...]
"""
import fcntl
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq, proc_stat  # noqa: E402

F_OFD_SETLK = 37
F_OFD_SETLKW = 38
F_SETLEASE = 1024


def layout(w):
    out = {}
    for line in (cryotest.read_text(w.path("layout")) or "").splitlines():
        k, _, v = line.partition(" ")
        out[k] = [int(x) for x in v.split()]
    check("c1" in out, "%s: no layout file" % w.name)
    return out


def tree_pids(w):
    lay = layout(w)
    return [w.pid, lay["c1"][0], lay["c2"][0], lay["c3"][0]] + lay["waiters"]


def start_locks(h):
    w = h.start_workload("locks")
    h.wait_ready(w, timeout=30)
    return w


# A verify waits for signals and waiters (bounded, a few seconds each when
# they do not come).
VERIFY_TIMEOUT = 90


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when, timeout=VERIFY_TIMEOUT)
    h.verify_ok(rw, when=when + " (again)", timeout=VERIFY_TIMEOUT)
    h.verify_ok(rw, exit=True, when=when + " (exit)", timeout=VERIFY_TIMEOUT)
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def check_image(h, images, w):
    shown = h.show_json(images)
    feats = shown["features"]
    for f in ("file-locks", "fd-owner", "shared-fd-table", "shared-fs"):
        check(f in feats, "image features %s lack %r" % (feats, f))
    # Each lock once: P's three POSIX ranges, two OFD, two flocks and the
    # lease; C1's flock; C2's POSIX lock (through the table it shares with P).
    lay = layout(w)
    count = {}
    for p in shown["processes"]:
        for f in p.get("fds", []):
            for lk in f.get("locks", []):
                count[p["pid"]] = count.get(p["pid"], 0) + 1
    check_eq(count, {w.pid: 8, lay["c1"][0]: 1, lay["c2"][0]: 1}, "locks per process in the image")


def dump_killed(h):
    """The locks tree dumped in kill mode and gone: (workload, pids, image)."""
    w = start_locks(h)
    h.verify_ok(w, when="before dump", timeout=VERIFY_TIMEOUT)
    pids = tree_pids(w)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)
    return w, pids, images


def test_locks_kill(h):
    w, _, images = dump_killed(h)
    check_image(h, images, w)
    restore_verify_exit(h, w, images, "after restore")


def test_locks_leave_running(h):
    w = start_locks(h)
    pids = tree_pids(w)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone(pids)
    restore_verify_exit(h, w, images, "after restore")


def test_locks_rewind(h):
    w, pids, images = dump_killed(h)
    for i in range(2):
        restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
        cryotest.wait_pids_gone(pids)


def test_shared_table_helpers_keep_their_fds(h):
    """The workload's processes share an fd table (CLONE_FILES). Each restore
    helper holds an fd of its own for 200 ms where it opens files
    (/proc/self/oom_score_adj, ...; the HOLDFD fault point): the leader of the
    table must not close or install fds meanwhile. It did once: a helper's
    read failed with EBADF, or it closed an fd the leader had just installed
    and dropped the table's POSIX locks on that file."""
    w, pids, images = dump_killed(h)
    for i in range(2):
        r = h.restore(images, detach=True, expected_pid=w.pid,
                      env={"CRYO_RESTORE_FAULT_POINT": "helper-opens-files:HOLDFD"})
        rw = w.restored(r.pid)
        when = "after restore %d with helpers holding fds" % (i + 1)
        h.verify_ok(rw, when=when, timeout=VERIFY_TIMEOUT)
        h.verify_ok(rw, exit=True, when=when + " (exit)", timeout=VERIFY_TIMEOUT)
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
        cryotest.wait_pids_gone(pids)


def leftovers(pids):
    return [p for p in pids if cryotest.pid_alive(p)]


def test_restore_beside_original_fails(h):
    """The original still holds its locks: the restore fails, naming a lock
    and its holder, before anything is created; the original is untouched."""
    w = start_locks(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    r = h.restore(images, expect_ok=False)
    check(not isinstance(r, cryotest.Restored), "restore beside the running original succeeded")
    check(("lock" in r.message or "lease" in r.message) and "held by pid %d" % w.pid in r.message
          and "original still running" in r.message,
          "the error should name a lock held by the original: %s" % r.message)
    h.verify_ok(w, when="of the original after the refused restore")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")


def test_restore_fails_if_lock_taken(h):
    """Someone took a lock of the image after a kill-mode dump: the restore
    fails, naming it, and leaves no process; once it is free the image
    restores."""
    w, pids, images = dump_killed(h)
    path = w.path("table")
    with open(path, "r+b") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 2)
        r = h.restore(images, expect_ok=False)
        check(not isinstance(r, cryotest.Restored), "restore succeeded while another process holds one of its locks")
        check("held by pid %d" % os.getpid() in r.message,
              "the error should name the holder pid %d: %s" % (os.getpid(), r.message))
        check_eq(leftovers(pids), [], "processes left by the failed restore")
    restore_verify_exit(h, w, images, "after the lock was released")


# ---- refusals: small Python programs holding one kind of state ---------------

HOLDER = r"""
import fcntl, os, signal, sys, time
mode, path, ctl = sys.argv[1], sys.argv[2], sys.argv[3]
F_OFD_SETLK, F_SETLEASE = 37, 1024
f = open(path, "r+b")
if mode == "flock-shared-outside":
    fcntl.flock(f, fcntl.LOCK_EX)
    pid = os.fork()          # the child is dumped; its parent keeps the description
    if pid == 0:
        while True:
            time.sleep(1)
    open(ctl + "/child", "w").write(str(pid))
elif mode == "posix":
    fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
elif mode == "owner-outside":
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())
elif mode == "lease":
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # a break leaves the lease breaking
    f.close()
    f = open(path, "rb")
    fcntl.fcntl(f, F_SETLEASE, fcntl.F_RDLCK)
elif mode == "posix-exe":
    g = open("/proc/self/exe", "rb")
    fcntl.lockf(g, fcntl.LOCK_SH | fcntl.LOCK_NB)
open(ctl + "/ready.tmp", "w").write(str(os.getpid()))
os.rename(ctl + "/ready.tmp", ctl + "/ready")
while True:
    time.sleep(1)
"""


def start_holder(h, mode):
    ctl = h.mkdir("holder")
    script = os.path.join(ctl, "holder.py")
    with open(script, "w") as f:
        f.write(HOLDER)
    path = os.path.join(ctl, "file")
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    w = h.start("holder", [PYTHON, script, mode, path, ctl], ctl)
    h.wait_ready(w)
    return w, path


def refused(h, pid, must_name, leave_running=False):
    before = proc_stat(pid)
    r = h.dump(pid, h.mkdir("img"), leave_running=leave_running, expect_ok=False)
    check(r.rc != 0, "dump of pid %d succeeded" % pid)
    for part in must_name:
        check(part in r.message, "the refusal should name %r: %s" % (part, r.message))
    st = proc_stat(pid)
    check(st is not None and st["state"] in ("S", "R"), "pid %d disturbed by the refused dump: %r" % (pid, st))
    check_eq(st["ppid"], before["ppid"], "parent of pid %d after the refused dump" % pid)


def test_refuse_waiter_outside_in_kill_mode(h):
    """A process outside the tree waits for one of the tree's locks: in kill
    mode it would take it before the restore; refused. Leave-running works."""
    w, path = start_holder(h, "posix")
    waiter = subprocess.Popen(
        [PYTHON, "-c", "import fcntl,sys; f=open(sys.argv[1],'r+b'); fcntl.lockf(f, fcntl.LOCK_EX, 1, 3)", path],
        stdin=subprocess.DEVNULL, close_fds=True)
    h.tracked_pids.append(waiter.pid)
    deadline = time.monotonic() + 10
    while " %d " % waiter.pid not in (cryotest.read_text("/proc/locks") or ""):
        check(time.monotonic() < deadline, "the outside waiter does not wait")
        time.sleep(0.01)
    refused(h, w.pid, ["pid %d" % w.pid, "pid %d" % waiter.pid, "outside the tree", "--leave-running"])
    check(waiter.poll() is None, "the waiter got the lock: the refused dump released it")
    h.dump(w.pid, h.mkdir("img"), leave_running=True)
    check(waiter.poll() is None, "the waiter got the lock after a leave-running dump")
    h.kill_and_reap(w)
    waiter.wait(timeout=10)


def test_refuse_flock_shared_outside(h):
    w, path = start_holder(h, "flock-shared-outside")
    child = int(cryotest.read_text(w.path("child")).strip())
    refused(h, child, ["pid %d" % child, "flock", "pid %d" % w.pid, "outside the tree"])


def test_refuse_owner_outside(h):
    w, _ = start_holder(h, "owner-outside")
    refused(h, w.pid, ["pid %d" % w.pid, "SIGIO", "pid %d" % os.getpid(), "outside the tree"])


def test_refuse_posix_lock_on_executable(h):
    w, _ = start_holder(h, "posix-exe")
    refused(h, w.pid, ["pid %d" % w.pid, "POSIX read lock", "executable"])


def test_refuse_lease_being_broken(h):
    w, path = start_holder(h, "lease")
    try:
        os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        cryotest.fail("opening the leased file for writing did not start a lease break")
    except BlockingIOError:
        pass
    refused(h, w.pid, ["pid %d" % w.pid, "read lease", "being broken"])


def test_refuse_shared_table_outside(h):
    """A process sharing its fd table (CLONE_FILES) or fs_struct (CLONE_FS)
    with a process outside the dumped tree (its parent) is refused."""
    w = start_locks(h)
    lay = layout(w)
    refused(h, lay["c2"][0], ["pid %d" % lay["c2"][0], "fd table", "CLONE_FILES", "outside the tree"])
    refused(h, lay["c3"][0], ["pid %d" % lay["c3"][0], "fs_struct", "CLONE_FS", "outside the tree"])
    h.verify_ok(w, when="after the refused dumps")


TESTS = [
    test_locks_kill,
    test_locks_leave_running,
    test_locks_rewind,
    test_shared_table_helpers_keep_their_fds,
    test_restore_beside_original_fails,
    test_restore_fails_if_lock_taken,
    test_refuse_waiter_outside_in_kill_mode,
    test_refuse_flock_shared_outside,
    test_refuse_owner_outside,
    test_refuse_posix_lock_on_executable,
    test_refuse_lease_being_broken,
    test_refuse_shared_table_outside,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
