#!/usr/bin/python3
"""End-to-end tests of trees that own their IPC and UTS namespaces (the
ipcns workload, which unshares them itself or runs under `unshare --fork
--ipc --uts`): host and domain name, IPC sysctls, a SysV semaphore set (ids,
keys, modes, values, a process waiting on it), a SysV message queue with
messages of several types, a SysV segment, POSIX message queues with
messages of several priorities (one held open), all verified by the
workload itself after a restore in kill, leave-running and rewind (beside
the running original, --pidns new) modes, and from outside: the restored
tree is in fresh namespaces and nothing of them shows in the host's. Then
POSIX queues of the host's IPC namespace held by a tree (reopened by name,
their messages untouched), and the refusals, by name, before anything is
written.

Run: test_ipcns.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, read_text  # noqa: E402
from test_pidns import restore_copy  # noqa: E402

KEYS = {"sem": 0x5e11, "msg": 0x3e55, "shm": 0x54a1}


def ns_of(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def host_keys(kind):
    """Keys of /proc/sysvipc/KIND in the host's (the harness's) namespace."""
    out = set()
    for line in (read_text("/proc/sysvipc/" + kind) or "").splitlines()[1:]:
        out.add(int(line.split()[0]) & 0xffffffff)
    return out


def check_outside(pid, when):
    """The process is in namespaces of its own, and nothing of them leaked
    into the host's."""
    for kind in ("ipc", "uts"):
        check(ns_of(pid, kind) != ns_of(os.getpid(), kind), "%s: pid %d is in the host's %s namespace"
              % (when, pid, kind))
    for kind, key in KEYS.items():
        check(key not in host_keys(kind), "%s: the host's IPC namespace has SysV %s key %#x" % (when, kind, key))


def start(h, *args):
    w = h.start_workload("ipcns", *args)
    h.wait_ready(w)
    h.verify_ok(w, when="of the original")
    check_outside(w.pid, "original")
    return w


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_outside(r.pid, when)
    h.verify_ok(rw, when=when)  # reads everything, takes nothing
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def test_ipcns_kill(h):
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(2):  # and again from the same image
        restore_verify_exit(h, w, images, "after restore %d" % (i + 1))


def test_ipcns_leave_running(h):
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of the original")
    restore_verify_exit(h, w, images, "after restore")


def test_ipcns_rewind_beside_original(h):
    """The copy's namespaces are fresh: it runs beside the original, whose
    objects have the same ids and keys."""
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    copy, r, init = restore_copy(h, w, images)
    check(pid_alive(w.pid), "the original runs beside its copy")
    check(ns_of(r.pid, "ipc") != ns_of(w.pid, "ipc"), "the copy shares the original's IPC namespace")
    h.verify_ok(copy, when="of the copy")
    h.verify_ok(w, when="of the original beside its copy")
    h.verify_ok(copy, exit=True, when="of the copy (exit)")
    check_eq(h.wait_exit(init), ("exit", 0), "the copy's init status once it exited 0")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of the original")


def start_external(h):
    """`unshare --fork --ipc --uts ipcns CTL external`: (unshare's pid, the workload)."""
    ctl = h.mkdir("ipcns-external")
    return h.start_under_unshare("ipcns", ["/usr/bin/unshare", "--fork", "--ipc", "--uts", "--",
                          h.workload_path("ipcns"), ctl, "external"], ctl)


def test_ipcns_under_unshare(h):
    """Dumping the workload alone is refused: unshare, its parent, is in its
    namespaces. The whole tree from unshare is restored."""
    u, w = start_external(h)
    h.verify_ok(w, when="of the original")
    h.dump_refused(w.pid, ["pid %d, outside the tree, lives in the tree's UTS namespace" % u.pid])
    h.verify_ok(w, when="after the refused dump")
    images = h.dump_unshared(u, w.pid)
    r = h.restore(images, detach=True, expected_pid=u.pid)
    check_outside(r.pid, "restored unshare")
    check_eq(ns_of(w.pid, "ipc"), ns_of(r.pid, "ipc"), "unshare and its child share the fresh namespace")
    rw = w.restored(w.pid)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_host_mqueue_fd(h):
    """A queue of the host's IPC namespace is the outside world's: reopened by
    name with the fd's flags, its messages left where they are (the
    workload finds both still queued)."""
    w = h.start_workload("ipcns", "host")
    h.wait_ready(w)
    h.verify_ok(w, when="of the original")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="after dump --leave-running (messages not taken)")
    h.kill_and_reap(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    h.verify_ok(w.restored(r.pid), exit=True, when="after restore")  # exit unlinks the queue


def test_refusals(h):
    cases = [
        ("semop", ["semaphore adjustments", "SEM_UNDO"]),
        ("split", ["a tree is restored only with one IPC namespace"]),
        ("notify", ["/cryo-wl-held", "notification"]),
        ("loose-shm", ["attached by no process"]),
        ("host-unlink", ["/cryo-e2e-host-", "unlinked"]),
    ]
    for mode, names in cases:
        w = h.start_workload("ipcns", mode)
        h.wait_ready(w)
        h.dump_refused(w.pid, names)
        h.verify_ok(w, when="after the refused dump (%s)" % mode)
        h.kill_and_reap(w)


def test_killed_during_mqueue_copy(h):
    """cryo killed (SIGKILL, SIGINT) while a POSIX message queue's messages
    are out of it (taken by cryo's copying process, to be sent back): the
    copier finishes alone, so the original finds every message, in order and
    with its priority; then a kill-mode dump and restore still work."""
    w = start(h)
    images = os.path.join(h.tmp_root, "img-count")
    hold = {"CRYO_TEST_MQUEUE_HOLD_MS": "300"}  # the copier holds the messages out that long
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--force", "--leave-running", "-vv"],
                   env=dict(hold, CRYO_FAULT_POINT="0"), tag="dump-count")
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    points = [int(n) for n in re.findall(r"mqueue fault point (\d+):", r.log or "")]
    check(len(points) >= 1, "no mqueue fault point in the dump's log")
    h.verify_ok(w, when="after the counting dump")
    for point in points:
        for sig in ("KILL", "INT"):
            when = "after SIG%s at mqueue fault point %d" % (sig, point)
            img = os.path.join(h.tmp_root, "img-%d-%s" % (point, sig))
            r = h.run_cryo(["dump", "-t", str(w.pid), "-D", img, "--leave-running"],
                           env=dict(hold, CRYO_FAULT_POINT=str(point), CRYO_FAULT_SIGNAL=sig), tag="dump-fault")
            check(r.rc in (0, -getattr(signal, "SIG" + sig)), "%s: cryo's status %s\n%s" % (when, r.rc, r.describe()))
            h.reap_orphans()
            check(pid_alive(w.pid), "%s: the original died" % when)
            # The copier, on its own now, sends the messages back within its hold.
            deadline = time.monotonic() + 20
            line = h.verify(w)  # every queue checked: messages, order, priorities
            while not line.startswith("OK ") and time.monotonic() < deadline:
                time.sleep(0.1)
                line = h.verify(w)
            check(line.startswith("OK "), "%s: verify: %s" % (when, line))
            check_outside(w.pid, when)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    restore_verify_exit(h, w, images, "after the last restore")


TESTS = [
    test_ipcns_kill,
    test_ipcns_leave_running,
    test_ipcns_rewind_beside_original,
    test_ipcns_under_unshare,
    test_host_mqueue_fd,
    test_refusals,
    test_killed_during_mqueue_copy,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
