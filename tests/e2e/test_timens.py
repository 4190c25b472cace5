#!/usr/bin/python3
"""End-to-end tests of trees in a time namespace of their own (the timens
workload under `unshare --time --monotonic 100000 --boottime 200000 --fork`):
the namespace's clock offsets are dumped and restored into a fresh time
namespace, so the restored process's CLOCK_MONOTONIC and CLOCK_BOOTTIME do
not jump back by the offsets (the workload checks its clocks, its
timens_offsets and a child's clock). Kill, rewind (leave-running, the
original killed) and rewind beside the running original (--pidns new), the
workload dumped alone (cryo makes the namespace) and with unshare (unshare's
restore helper makes it, unshare itself staying in cryo's time namespace),
and verified from outside: fresh namespaces, never the harness's. With a
user namespace of the tree's own (`--user --map-root-user --time`, with
--fork dumped from unshare, without it the workload alone): the time
namespace owned by the fresh user namespace (NS_GET_USERNS), kill and
rewind; --pidns new refused by name.

Run: test_timens.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, read_text  # noqa: E402
from test_pidns import restore_copy  # noqa: E402

MONO, BOOT = 100000, 200000


def ns_of(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def offsets(pid):
    """/proc/PID/timens_offsets (its time_for_children's) as {clock: (s, ns)}."""
    out = {}
    for line in (read_text("/proc/%d/timens_offsets" % pid) or "").splitlines():
        name, sec, nsec = line.split()
        out[name] = (int(sec), int(nsec))
    return out


def check_inside(pid, when):
    """pid lives in a time namespace other than the harness's, with the offsets."""
    check(ns_of(pid, "time") != ns_of(os.getpid(), "time"), "%s: pid %d is in the harness's time namespace"
          % (when, pid))
    check_eq(ns_of(pid, "time"), ns_of(pid, "time_for_children"), "%s: time and time_for_children of pid %d"
             % (when, pid))
    check_eq(offsets(pid), {"monotonic": (MONO, 0), "boottime": (BOOT, 0)}, "%s: offsets of pid %d" % (when, pid))


def start(h):
    """`unshare --time ... --fork setsid timens CTL MONO BOOT`: (unshare's
    Workload, the workload's). The workload leads a session of its own
    (setsid execs it in unshare's child), so that a copy of it alone fits a
    new PID namespace."""
    ctl = h.mkdir("timens")
    u, w = h.start_under_unshare("timens", ["/usr/bin/unshare", "--time", "--monotonic", str(MONO), "--boottime", str(BOOT), "--fork",
                           "--", "/usr/bin/setsid", h.workload_path("timens"), ctl, str(MONO), str(BOOT)], ctl)
    h.verify_ok(w, when="of the original")
    check_inside(w.pid, "original")
    return u, w


def restore_verify(h, w, images, when, exit=True):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)  # the workload's own clock checks first
    check_inside(r.pid, when)
    if exit:
        h.verify_ok(rw, exit=True, when=when + " (exit)")
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    return rw


def test_kill(h):
    """The workload alone (it lives in the namespace: cryo makes a fresh one
    before the root), restored twice from one image."""
    u, w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.wait_exit(u)  # unshare ends once its child was killed by the dump
    for i in range(2):
        restore_verify(h, w, images, "after restore %d" % (i + 1))


def test_rewind(h):
    """Leave-running dump; the original goes on, is checked, then killed;
    the restored process's clocks are back where the original's were."""
    u, w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    check_inside(w.pid, "original after the dump")
    h.cleanup_one(w.pid)
    h.wait_exit(u)  # unshare ends once its child was killed
    restore_verify(h, w, images, "after the rewind")


def test_rewind_beside_original(h):
    """--pidns new while the original runs: both in time namespaces with the
    offsets, neither the other's."""
    u, w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    copy, r, init = restore_copy(h, w, images)
    check(pid_alive(w.pid), "the original runs beside its copy")
    check_inside(r.pid, "copy")
    check(ns_of(r.pid, "time") != ns_of(w.pid, "time"), "the copy shares the original's time namespace")
    h.verify_ok(copy, when="of the copy")
    h.verify_ok(w, when="of the original beside its copy")
    h.verify_ok(copy, exit=True, when="of the copy (exit)")
    check_eq(h.wait_exit(init), ("exit", 0), "the copy's init status once it exited 0")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u), ("exit", 0), "exit status of unshare")


def test_unshare_in_the_tree(h):
    """Dumped from unshare: unshare lives in cryo's time namespace and makes
    its children in the tree's; restored so (its helper unshares before it
    creates the workload)."""
    u, w = start(h)
    check_eq(ns_of(u.pid, "time"), ns_of(os.getpid(), "time"), "unshare's own time namespace")
    images = h.dump_unshared(u, w.pid)
    r = h.restore(images, detach=True, expected_pid=u.pid)
    check_eq(ns_of(r.pid, "time"), ns_of(os.getpid(), "time"), "restored unshare's own time namespace")
    check_eq(ns_of(r.pid, "time_for_children"), ns_of(w.pid, "time"), "unshare's children's time namespace")
    check_eq(offsets(r.pid), {"monotonic": (MONO, 0), "boottime": (BOOT, 0)}, "offsets unshare's children get")
    check_inside(w.pid, "restored workload")
    rw = w.restored(w.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")


NS_GET_USERNS = 0xb701  # _IO(0xb7, 0x1), ioctl_ns(2)


def owner_ino(path):
    """The inode of the user namespace owning namespace file `path`."""
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def start_userns(h):
    """`unshare --user --map-root-user --time ... --fork setsid timens CTL
    MONO BOOT`: unshare lives in the fresh user namespace and in the
    harness's time namespace, its child in both fresh ones (the time
    namespace owned by the user namespace)."""
    ctl = h.mkdir("timens")
    u, w = h.start_under_unshare("timens", ["/usr/bin/unshare", "--user", "--map-root-user", "--time", "--monotonic",
                                 str(MONO), "--boottime", str(BOOT), "--fork", "--", "/usr/bin/setsid",
                                 h.workload_path("timens"), ctl, str(MONO), str(BOOT)], ctl)
    h.verify_ok(w, when="of the original")
    check_userns_layout(u.pid, w.pid, "original")
    return u, w


def check_userns_layout(upid, wpid, when):
    check(ns_of(upid, "user") != ns_of(os.getpid(), "user"), "%s: unshare in the harness's user namespace" % when)
    check_eq(ns_of(upid, "user"), ns_of(wpid, "user"), "%s: unshare and the workload share the user namespace" % when)
    check_eq(ns_of(upid, "time"), ns_of(os.getpid(), "time"), "%s: unshare's own time namespace" % when)
    check_eq(ns_of(upid, "time_for_children"), ns_of(wpid, "time"), "%s: unshare's children's time namespace" % when)
    check_eq(offsets(upid), {"monotonic": (MONO, 0), "boottime": (BOOT, 0)}, "%s: offsets unshare's children get"
             % when)
    check_inside(wpid, when)
    user = os.stat("/proc/%d/ns/user" % wpid).st_ino
    check_eq(owner_ino("/proc/%d/ns/time" % wpid), user, "%s: the user namespace owning the workload's time "
             "namespace" % when)
    check_eq(owner_ino("/proc/%d/ns/time_for_children" % upid), user, "%s: the user namespace owning unshare's "
             "time_for_children" % when)


def userns_round(h, leave_running):
    u, w = start_userns(h)
    images = h.dump_unshared(u, w, leave_running=leave_running)
    if leave_running:
        # Not with --pidns new yet: refused by name, nothing made.
        res = h.restore(images, expect_ok=False, extra=["--pidns", "new"])
        check(res.rc != 0 and "--pidns new with a user namespace and a time namespace" in res.stderr,
              "--pidns new refused by name: %s" % res.describe())
    r = h.restore(images, detach=True, expected_pid=u.pid)
    rw = w.restored(w.pid)
    h.verify_ok(rw, when="after restore")  # the workload's own clock checks first
    check_userns_layout(r.pid, w.pid, "after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_userns_kill(h):
    """`--user --map-root-user --time --fork`, dumped from unshare: the
    restore makes the time namespace in the fresh user namespace (unshare's
    helper once it joined it; the workload's helper enters it), with the
    offsets; the workload's clocks go on."""
    userns_round(h, leave_running=False)


def test_userns_rewind(h):
    """The same, leave-running: the original goes on, is checked and killed,
    then the restore (--pidns new refused by name first)."""
    userns_round(h, leave_running=True)


def test_userns_root_inside(h):
    """`unshare --user --map-root-user --time ... CMD` without --fork: the
    workload (unshare exec'd into it) lives in both fresh namespaces, dumped
    alone: its helper makes the time namespace once in the user namespace and
    enters it, its child's helper enters it; kill-mode dump, restored twice."""
    ctl = h.mkdir("timens")
    w = h.start("timens", ["/usr/bin/unshare", "--user", "--map-root-user", "--time", "--monotonic", str(MONO),
                           "--boottime", str(BOOT), "--", h.workload_path("timens"), ctl, str(MONO), str(BOOT)], ctl)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(w.pid):
            fail("the workload did not get ready: %s" % w.stderr())
        time.sleep(0.01)
    h.verify_ok(w, when="of the original")
    check_inside(w.pid, "original")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    check_eq(h.wait_exit(w), ("signal", 9), "the workload after the kill-mode dump")
    h.reap_orphans()
    for i in range(2):
        when = "after restore %d" % (i + 1)
        rw = restore_verify(h, w, images, when, exit=False)
        check(ns_of(rw.pid, "user") != ns_of(os.getpid(), "user"), "%s: in the harness's user namespace" % when)
        check_eq(owner_ino("/proc/%d/ns/time" % rw.pid), os.stat("/proc/%d/ns/user" % rw.pid).st_ino,
                 "%s: the user namespace owning the workload's time namespace" % when)
        h.verify_ok(rw, exit=True, when=when + " (exit)")
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


TESTS = [
    test_kill,
    test_rewind,
    test_rewind_beside_original,
    test_unshare_in_the_tree,
    test_userns_kill,
    test_userns_rewind,
    test_userns_root_inside,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
