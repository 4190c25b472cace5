#!/usr/bin/python3
"""End-to-end tests of multi-threaded processes: every thread comes back with
its TID, registers, TLS, name, signal mask, and the syscall it was blocked in.

Run: test_threads.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402


def tids(pid):
    return sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))


def kill_mode(h, n):
    w = h.start_workload("threads", str(n))
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    before = tids(w.pid)
    check_eq(len(before), n + 1, "tasks before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    info = h.show_json(images)
    check_eq(info["processes"][0]["threads"], n + 1, "threads in the image")
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(tids(r.pid), before, "thread ids after restore")
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_threads_8_kill(h):
    kill_mode(h, 8)


def test_threads_64_kill(h):
    kill_mode(h, 64)


def test_threads_8_leave_running(h):
    w = h.start_workload("threads", "8")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    before = tids(w.pid)
    h.kill_and_reap(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(tids(r.pid), before, "thread ids after restore")
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_threads_64_rewind(h):
    w = h.start_workload("threads", "64")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(3):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def test_sleeps_resume_without_eintr(h):
    """Threads asleep in nanosleep / clock_nanosleep (relative, without rem,
    absolute) go on sleeping after the dump and after each restore: no EINTR
    (signal(7): a stop does not make these calls fail)."""
    w = h.start_workload("sleeps")
    h.wait_ready(w)
    time.sleep(0.3)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    for i in range(2):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, when="after restore %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="after restore %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_python_threads(h):
    """python3 with a second thread sleeping in the interpreter."""
    w = h.start_workload("loop.py", "--thread")
    h.wait_ready(w)
    check_eq(len(tids(w.pid)), 2, "python threads")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(len(tids(r.pid)), 2, "python threads after restore")
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


TESTS = [
    test_threads_8_kill,
    test_threads_64_kill,
    test_threads_8_leave_running,
    test_threads_64_rewind,
    test_sleeps_resume_without_eintr,
    test_python_threads,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
