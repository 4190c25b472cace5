#!/usr/bin/python3
"""End-to-end tests of the remaining kinds of state (issue 9 item 4): seccomp
filters restored (tests/workloads/seccomp.c checks that the filtered calls are
still filtered, the others work, per thread, with the filters shared as
before); O_PATH fds (files, a symbolic link itself, a directory, an unlinked
file) restored; an idle AIO context restored (its refusals: test_aioctx.py);
memfd_secret refused by name (io_uring: test_events.py; guard regions:
test_audit.py; hugetlb memory, private and shared: test_hugetlb.py).

Run: test_kinds.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402


def seccomp_counts(pid):
    """Seccomp mode and filter count of every thread of pid."""
    out = {}
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        st = cryotest.read_text("/proc/%d/task/%s/status" % (pid, tid)) or ""
        fields = dict(l.split(":\t", 1) for l in st.splitlines() if ":\t" in l)
        out[int(tid)] = (fields.get("Seccomp", "?").strip(), fields.get("Seccomp_filters", "?").strip())
    return out


def start_seccomp(h, mode):
    w = h.start_workload("seccomp", mode)
    h.wait_ready(w)
    h.verify_ok(w, when="before the dump")
    return w, seccomp_counts(w.pid)


def check_restored(h, w, images, before, when):
    h.check_feature(images, "seccomp")
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(seccomp_counts(r.pid), before, "seccomp mode and filters per thread " + when)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def seccomp_tests(mode):
    def kill(h):
        w, before = start_seccomp(h, mode)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        check_restored(h, w, images, before, "after restore")

    def leave_running(h):
        w, before = start_seccomp(h, mode)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        check_eq(seccomp_counts(w.pid), before, "seccomp of the original after dump --leave-running")
        h.verify_ok(w, when="of the original after dump --leave-running")
        h.kill_and_reap(w)
        check_restored(h, w, images, before, "after restore")

    def rewind(h):
        w, before = start_seccomp(h, mode)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        for i in range(2):
            check_restored(h, w, images, before, "in rewind instance %d" % (i + 1))

    kill.__name__ = "test_seccomp_%s_kill" % mode
    leave_running.__name__ = "test_seccomp_%s_leave_running" % mode
    rewind.__name__ = "test_seccomp_%s_rewind" % mode
    return [kill, leave_running, rewind]


def test_seccomp_user_notif_refused(h):
    """A filter that hands system calls to a supervisor (SECCOMP_RET_USER_NOTIF)
    is refused by name: its notification fd cannot be restored."""
    w = h.start_workload("seccomp", "notif")
    h.wait_ready(w)
    h.verify_ok(w, when="before the dump")
    h.dump_refused(w.pid, ["pid %d" % w.pid, "SECCOMP_RET_USER_NOTIF"])
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def seccomp_refused_test(mode, must_name):
    """A filter (or strict mode) that would kill a thread on a call cryo's
    injected code makes on its own if cryo is killed (the way back to the
    task's own state, or a remote call in flight): refused by name before
    anything is written, the tree untouched."""
    def refused(h):
        w = h.start_workload("seccomp", mode)
        h.wait_ready(w)
        h.verify_ok(w, when="before the dump")
        h.dump_refused(w.pid, ["pid %d" % w.pid] + must_name)
        h.verify_ok(w, exit=True, when="after the refused dump")
        check_eq(h.wait_exit(w), ("exit", 0), "exit status")
    refused.__name__ = "test_seccomp_%s_refused" % mode
    return refused


def start_kind(h, mode):
    """The kinds workload in `mode` (a kernel that cannot make it fails the test)."""
    w = h.start_workload("kinds", mode)
    deadline = time.monotonic() + 20
    while not os.path.exists(w.path("ready")):
        rc = w.popen.poll()
        check(rc != 3, "this kernel cannot make %s: %s" % (mode, w.stdout().strip()))
        check(rc is None, "kinds %s exited with %s before ready: %s" % (mode, rc, w.stderr().strip()))
        check(time.monotonic() < deadline, "kinds %s not ready within 20 s" % mode)
        time.sleep(0.01)
    h.wait_ready(w)
    h.verify_ok(w, when="before the dump")
    return w


def fd_links(pid):
    base = "/proc/%d/fd" % pid
    return {int(n): os.readlink("%s/%s" % (base, n)) for n in os.listdir(base)}


def restored_kind_tests(mode, fds):
    """Kill, leave-running and rewind of a kinds workload whose fds `fds`
    come back naming the same paths (the workload checks the rest)."""
    def restore_and_check(h, w, images, before, when):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        after = fd_links(r.pid)
        for fd in fds:
            check_eq(after.get(fd), before[fd], "fd %d %s" % (fd, when))
        h.verify_ok(rw, when=when)
        h.verify_ok(rw, exit=True, when=when + " (exit)")
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)

    def kill(h):
        w = start_kind(h, mode)
        before = fd_links(w.pid)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        restore_and_check(h, w, images, before, "after restore")

    def leave_running(h):
        w = start_kind(h, mode)
        before = fd_links(w.pid)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        h.verify_ok(w, when="of the original after dump --leave-running")
        h.kill_and_reap(w)
        restore_and_check(h, w, images, before, "after restore")

    def rewind(h):
        w = start_kind(h, mode)
        before = fd_links(w.pid)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        for i in range(2):
            restore_and_check(h, w, images, before, "in rewind instance %d" % (i + 1))

    for fn, name in ((kill, "kill"), (leave_running, "leave_running"), (rewind, "rewind")):
        fn.__name__ = "test_%s_%s" % (mode, name)
    return [kill, leave_running, rewind]


def refused_kind_test(mode, words, setup=None):
    """A kind cryo refuses: named in the refusal, nothing written, the
    workload runs on and still verifies."""
    def test(h):
        undo = setup() if setup else None
        try:
            w = start_kind(h, mode)
            h.dump_refused(w.pid, ["pid %d" % w.pid] + words)
            h.verify_ok(w, exit=True, when="after the refused dump")
            check_eq(h.wait_exit(w), ("exit", 0), "exit status")
        finally:
            if undo:
                undo()
    test.__name__ = "test_refuse_" + mode
    return test


TESTS = [test_seccomp_user_notif_refused]
TESTS += restored_kind_tests("opath", [10, 11, 12])
TESTS += restored_kind_tests("opath_deleted", [10])
TESTS += [
    refused_kind_test("secretmem", ["memfd_secret"]),
]
# An idle AIO context (io_setup(2)): made again at its address (test_aioctx.py).
TESTS += restored_kind_tests("aio", [])
for _mode in ("filter", "mmapblock", "threads"):
    TESTS += seccomp_tests(_mode)
# munmap: the way back of the scratch memory; strict mode kills on every
# remote call cryo makes in that thread.
TESTS += [
    seccomp_refused_test("killmunmap", ["would kill munmap", "cryo's injected code needs"]),
    seccomp_refused_test("strict", ["strict mode would kill", "cryo's injected code needs"]),
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
