#!/usr/bin/python3
"""End-to-end tests of dirty tracking for incremental dumps
(`cryo dump --leave-running --track-mem`, then `--parent`).

The incr workload (tests/workloads/incr.c) rewrites a few pages of 16 MiB at
each step and checks every byte of its memory after a restore, so a page the
tracking wrongly called unchanged comes back with its old bytes and the
restored workload fails its verification (and `cryo show --compare-pages`
against a full dump of the same moment differs). Tests: the tracked
incremental dump (pages known unchanged without being read), a chain of
tracked dumps, and the fallbacks to the content comparison: the tracker
killed, a --parent that is not the tracker's last image.

Run: test_dirty_tracking.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail  # noqa: E402
from test_incremental import start, step, verify_restored, incremental_dump  # noqa: E402

TRACKED = re.compile(r"incremental: (\d+) pages .* taken from the parent image .*, (\d+) known unchanged by dirty "
                     r"tracking, (\d+) compared")


def tracker_pid(r):
    m = re.search(r"memory tracker started \(pid (\d+)\)", r.log or "")
    if not m:
        fail("no memory tracker started\n%s" % r.describe())
    return int(m.group(1))


def counts(r):
    m = TRACKED.search(r.log or "")
    if not m:
        fail("no incremental summary in the log\n%s" % r.describe())
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def stop_tracker(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    cryotest.wait_pids_gone([pid])


def test_tracked_pages_not_read(h):
    w = start(h)
    parent = h.mkdir("parent")
    r = h.dump(w.pid, parent, leave_running=True, extra=["--track-mem"])
    tracker = tracker_pid(r)
    try:
        # The program sees no extra fd and runs on.
        fds = os.listdir("/proc/%d/fd" % w.pid)
        check(all("userfaultfd" not in os.readlink("/proc/%d/fd/%s" % (w.pid, fd)) for fd in fds),
              "a userfaultfd was left in the program")
        step(h, w, 1)
        step(h, w, 2)
        os.kill(w.pid, signal.SIGSTOP)
        h.wait_state(w.pid, "T")
        child = h.mkdir("child")
        r, show = incremental_dump(h, w, child, parent, leave_running=True)
        taken, tracked, compared = counts(r)
        h.note("taken from the parent %d pages: %d by tracking, %d compared" % (taken, tracked, compared))
        check(tracked > 3000, "only %d pages known unchanged by tracking\n%s" % (tracked, r.describe()))
        check(compared < 1000, "%d pages compared although tracked" % compared)
        full = h.mkdir("full")
        h.dump(w.pid, full, leave_running=True)
        cmp = h.run_cryo(["show", child, "--compare-pages", full], tag="compare")
        check(cmp.rc == 0, "the tracked incremental image differs from a full dump\n%s" % cmp.describe())
        h.kill_and_reap(w)
        cryotest.wait_pids_gone([w.pid])
        verify_restored(h, w, child, 2, "after restoring the tracked incremental image", stopped=True)
    finally:
        stop_tracker(tracker)


def test_chain_of_tracked_dumps(h):
    w = start(h)
    images = [h.mkdir("p%d" % i) for i in range(4)]
    r = h.dump(w.pid, images[0], leave_running=True, extra=["--track-mem"])
    tracker = tracker_pid(r)
    try:
        for i in range(1, 4):
            step(h, w, i)
            r, _ = incremental_dump(h, w, images[i], images[i - 1], leave_running=True)
            _, tracked, _ = counts(r)
            check(tracked > 3000, "dump %d: only %d pages known unchanged by tracking" % (i, tracked))
        h.kill_and_reap(w)
        cryotest.wait_pids_gone([w.pid])
        verify_restored(h, w, images[3], 3, "rewind to the last tracked image")
        verify_restored(h, w, images[2], 2, "rewind to the third image")
    finally:
        stop_tracker(tracker)


def test_tracker_killed_falls_back_to_comparison(h):
    w = start(h)
    parent = h.mkdir("parent")
    r = h.dump(w.pid, parent, leave_running=True, extra=["--track-mem"])
    stop_tracker(tracker_pid(r))
    step(h, w, 1)
    child = h.mkdir("child")
    r, _ = incremental_dump(h, w, child, parent)
    taken, tracked, compared = counts(r)
    check_eq(tracked, 0, "pages known unchanged by a tracker that was killed")
    check(taken > 3000 and compared >= taken, "the comparison took %d of %d pages" % (taken, compared))
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    verify_restored(h, w, child, 1, "after restoring with the tracker killed")


def test_other_parent_falls_back_to_comparison(h):
    """The tracker's protection is relative to its last image: a --parent
    that is an older image is compared, never taken on the tracking's word."""
    w = start(h)
    p0, p1, child = h.mkdir("p0"), h.mkdir("p1"), h.mkdir("child")
    r = h.dump(w.pid, p0, leave_running=True, extra=["--track-mem"])
    tracker = tracker_pid(r)
    try:
        step(h, w, 1)
        h.dump(w.pid, p1, leave_running=True)  # the tracking is p1's from here
        step(h, w, 2)
        r, _ = incremental_dump(h, w, child, p0, leave_running=True)
        taken, tracked, compared = counts(r)
        check_eq(tracked, 0, "pages known unchanged relative to an image that is not the tracker's")
        check(taken > 3000, "the comparison took only %d pages" % taken)
        h.kill_and_reap(w)
        cryotest.wait_pids_gone([w.pid])
        verify_restored(h, w, child, 2, "after restoring against the older parent")
    finally:
        stop_tracker(tracker)


def fd_table(pid):
    """fd -> what it is, of `pid`."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[fd] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            pass
    return out


def own_state(pid):
    """tid -> (blocked signals, the system call it sleeps in), of every
    thread of `pid`: both the program's own once it is out of cryo's code."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        out[tid] = (cryotest.read_text("/proc/%d/task/%s/status" % (pid, tid)).split("SigBlk:")[1].split()[0],
                    cryotest.read_text("/proc/%d/task/%s/syscall" % (pid, tid)).split()[0])
    return out


def trackers_of(pid):
    """The pids of the memory trackers of the tree rooted at `pid` (the
    processes holding the listening socket @cryo-memtrack/PID/...)."""
    inodes = set()
    for line in cryotest.read_text("/proc/net/unix").splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[7].startswith("@cryo-memtrack/%d/" % pid):
            inodes.add("socket:[%s]" % f[6])
    out = set()
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if inodes & set(os.readlink("/proc/%s/fd/%s" % (p, fd)) for fd in os.listdir("/proc/%s/fd" % p)):
                out.add(int(p))
        except OSError:
            pass
    return out


def test_killed_while_making_the_userfaultfd(h):
    """cryo killed (SIGKILL) at each fault point around the userfaultfd that
    --track-mem makes inside the program (a remote call, then taken out with
    pidfd_getfd): the program's fd table is exactly what it was (the call's
    way back closes the fd in the program, whenever cryo dies), and the
    program runs on untraced and passes its own verification."""
    w = start(h)
    before, own = fd_table(w.pid), own_state(w.pid)
    deadline = time.monotonic() + 10  # taken while every thread sleeps
    while any(v[1] == "running" for v in own.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
        own = own_state(w.pid)
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("img-count"), "--leave-running", "--track-mem", "-vv"],
                   env={"CRYO_FAULT_POINT": "0"}, tag="dump-count")
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    stop_tracker(tracker_pid(r))
    m = re.search(r"fault point (\d+): userfaultfd made in task %d as fd (\d+)" % w.pid, r.log or "")
    check(m is not None, "no fault point of the userfaultfd in the log\n%s" % r.describe())
    point = int(m.group(1))
    check(m.group(2) not in before, "the userfaultfd took fd %s, which the program holds" % m.group(2))
    check_eq(fd_table(w.pid), before, "the program's fds after the counting dump")
    try:
        for p in range(point - 3, point + 3):
            when = "after SIGKILL at fault point %d (the userfaultfd is made at %d)" % (p, point)
            r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("img-%d" % p), "--leave-running", "--track-mem"],
                           env={"CRYO_FAULT_POINT": str(p), "CRYO_FAULT_SIGNAL": "KILL"}, tag="dump-fault")
            check_eq(r.rc, -signal.SIGKILL, "cryo's status %s\n%s" % (when, r.describe()))
            check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid %s" % when)
            # The way back runs once the dead tracer's tracee runs on; the
            # threads back in their own masks and sleeps means it is through
            # (the close comes before), out of cryo's code before the next
            # dump seizes it.
            # (The state that ended the wait is the one checked: a second
            # read could find a thread on a CPU, "running".)
            deadline = time.monotonic() + 10
            state = own_state(w.pid)
            while state != own and time.monotonic() < deadline:
                time.sleep(0.02)
                state = own_state(w.pid)
            check_eq(state, own, "the program's masks and sleeps %s" % when)
            check_eq(fd_table(w.pid), before, "the program's fds %s" % when)
        step(h, w, 1)  # runs on
    finally:
        for t in trackers_of(w.pid):
            stop_tracker(t)
        h.kill_and_reap(w)


def test_track_mem_needs_leave_running(h):
    w = start(h)
    r = h.dump(w.pid, h.mkdir("img"), expect_ok=False, extra=["--track-mem"])
    check(r.rc != 0 and "--leave-running" in r.message, "--track-mem without --leave-running\n%s" % r.describe())
    check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "tracer of the workload after the refusal")
    h.verify_ok(w, when="after the refused dump")


if __name__ == "__main__":
    sys.exit(cryotest.main([test_tracked_pages_not_read, test_chain_of_tracked_dumps,
                   test_tracker_killed_falls_back_to_comparison, test_other_parent_falls_back_to_comparison,
                   test_track_mem_needs_leave_running, test_killed_while_making_the_userfaultfd], description=__doc__))
