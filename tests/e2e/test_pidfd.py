#!/usr/bin/python3
"""End-to-end tests of pidfds: a pidfd of a process of the tree comes back
pointing at the same process (its child: poll, pidfd_send_signal, waitid
P_PIDFD see it; itself with PIDFD_THREAD), with its flags and dups; a pidfd of
a reaped process comes back as one (poll readable, ESRCH, ECHILD, the same exit
status); see tests/workloads/pidfds.c. A pidfd of a process outside the tree,
or one description held by two processes, is refused by name.

Run: test_pidfd.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402
import test_pidns  # noqa: E402


def test_pidfd_kill(h):
    w = h.start_ready("pidfds")
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    h.check_feature(images, "pidfds")
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (kills its child through the pidfd and waits for it)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_pidfd_leave_running(h):
    w = h.start_ready("pidfds")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit: kills and waits for its child through the pidfd)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([p["pid"] for p in h.show_json(images)["processes"]])
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_pidfd_rewind(h):
    w = h.start_ready("pidfds")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(3):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def test_pidfd_pidns_new(h):
    """A copy in a new PID namespace, beside the original: its pidfds name
    the copy's processes (the image's pids inside the namespace), not the
    original's."""
    w = h.start_ready("pidfds")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    copy, r, init = test_pidns.restore_copy(h, w, images)
    h.verify_ok(copy, exit=True, when="of the copy in a new PID namespace")
    h.verify_ok(w, exit=True, when="of the original beside the copy")
    check_eq(h.wait_exit(w), ("exit", 0), "original's exit status")
    check_eq(h.wait_exit(init), ("exit", 0), "status of the copy's init (the copy's root exited 0)")


def expect_refusal(h, w, names, what):
    images = h.mkdir("img")
    r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0 and r.rc != "TIMEOUT", "dump of a process holding %s: %s" % (what, r.describe()))
    for n in [str(w.pid), "pidfd"] + names:
        check(n in r.message, "dump error does not name %r (%s)\n%s" % (n, what, r.describe()))
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory")
    st = proc_stat(w.pid)
    check(st is not None and st["state"] in ("S", "R"), "workload disturbed by the refused dump: %r" % (st,))
    check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status after the refused dump")


def test_pidfd_outside_refused(h):
    w = h.start_ready("pidfds", "outside")
    expect_refusal(h, w, ["outside the tree", "pid %d" % os.getpid()], "a pidfd of its parent")


def test_pidfd_shared_refused(h):
    w = h.start_ready("pidfds", "shared")
    expect_refusal(h, w, ["share one pidfd description"], "a pidfd inherited by its child")


TESTS = [
    test_pidfd_kill,
    test_pidfd_leave_running,
    test_pidfd_rewind,
    test_pidfd_pidns_new,
    test_pidfd_outside_refused,
    test_pidfd_shared_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
