#!/usr/bin/python3
"""End-to-end tests of a dump's durability choices (issue 13, part 1):
  - kill mode (the default) makes the image durable before it kills;
  - --no-sync: the image is complete (no marker), restores, and the restored
    tree verifies its own memory, in kill and leave-running modes;
  - --leave-running resumes the tree once everything is read from it, before
    the image is synced; the image restores;
  - an interrupt after the resume (during the sync) leaves the running tree
    alone and no image behind;
  - the success line reports the time frozen;
  - --leave-running ends the freeze copy-on-write (mem/cow_copy.h): a
    program that rewrites every page with a generation number right after
    the resume is restored with the freeze's generation, every page; with
    --no-cow or --track-mem the memory is copied during the freeze.
No test here asserts a time (speed is in bench/bench_dump.py).

Run: test_durability.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
import faultlib  # noqa: E402
from cryotest import check, check_eq, read_text  # noqa: E402

RESUMED = "tree resumed after"
SYNCED = "records written and synced in"
KILLED = "tree killed in"


def dump(h, w, images, *extra):
    """A dump with a debug log and without -v (so that stderr holds the
    success line); returns (CryoResult, log text)."""
    log = os.path.join(h.tmp_root, "dump-%s.log" % os.path.basename(images))
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--log-file", log] + list(extra), log=False)
    check_eq(r.rc, 0, "dump %s exit status\n%s\n%s" % (" ".join(extra), r.describe(), read_text(log, "")[-3000:]))
    return r, read_text(log, "")


def success_line(r, w, images, synced=True):
    m = re.fullmatch(r"cryo: dumped 3 processes \(pid %d\) to %s: [0-9.]+ [KMG]iB in ([0-9]+\.[0-9]{2}) s, "
                     r"frozen ([0-9]+) ms%s\n" % (w.pid, re.escape(images), "" if synced else ", not synced"),
                     r.stderr)
    check(m is not None, "success line: %r" % r.stderr)
    total_ms, frozen_ms = float(m.group(1)) * 1000, int(m.group(2))
    check(frozen_ms <= total_ms + 10, "frozen %d ms but the whole dump took %.0f ms" % (frozen_ms, total_ms))


def in_order(log, first, second):
    a, b = log.find(first), log.find(second)
    check(a >= 0 and b >= 0, "the debug log should say %r and %r:\n%s" % (first, second, log[-3000:]))
    return a < b


def restore_and_verify(h, w, images, when):
    check_eq(faultlib.image_state(h, images), "complete", "image state %s" % when)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after the restore of " + when)
    faultlib.kill_tree(h, rw.pid)


def kill_mode(h, *extra):
    w = faultlib.start(h, "mem64")
    pids = faultlib.tree_pids(w.pid)
    images = h.mkdir("img")
    r, log = dump(h, w, images, *extra)
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)
    return w, images, r, log


def test_kill_mode_syncs_before_the_kill(h):
    w, images, r, log = kill_mode(h)
    success_line(r, w, images)
    check(in_order(log, SYNCED, KILLED), "kill mode: the tree was killed before the image was synced:\n" + log[-3000:])
    check(RESUMED not in log, "kill mode: the tree was resumed")
    restore_and_verify(h, w, images, "a kill-mode dump")


def test_no_sync_kill_mode(h):
    w, images, r, log = kill_mode(h, "--no-sync")
    success_line(r, w, images, synced=False)
    check("closed (no sync)" in log, "--no-sync: the phase line should say nothing was synced:\n" + log[-2000:])
    restore_and_verify(h, w, images, "a --no-sync kill-mode dump")


def leave_running(h, *extra):
    w = faultlib.start(h, "mem64")
    before = faultlib.snapshot(w.pid)
    images = h.mkdir("img")
    r, log = dump(h, w, images, "--leave-running", *extra)
    problem = faultlib.free_of_cryo(before)
    check(problem is None, "after dump --leave-running: %s" % problem)
    h.verify_ok(w, when="of the original after dump --leave-running")
    faultlib.kill_tree(h, w.pid)
    h.wait_exit(w)
    return w, images, r, log


def test_no_sync_leave_running(h):
    w, images, r, log = leave_running(h, "--no-sync")
    success_line(r, w, images, synced=False)
    restore_and_verify(h, w, images, "a --no-sync --leave-running dump")


def test_leave_running_resumes_before_the_sync(h):
    w, images, r, log = leave_running(h)
    success_line(r, w, images)
    check(in_order(log, RESUMED, SYNCED), "--leave-running: the tree stayed frozen until the image was synced:\n"
          + log[-3000:])
    check(KILLED not in log, "--leave-running: the tree was killed")
    restore_and_verify(h, w, images, "a --leave-running dump")


def test_interrupt_after_the_resume(h):
    """SIGINT at each of the last fault points of a --leave-running dump: the
    ones after the resume (the sync of the image) leave the running tree
    untouched and no image; at least one of them must come after the resume."""
    w = faultlib.start(h, "mem64")
    images = os.path.join(h.tmp_root, "img-count")
    total = faultlib.count_points(h, w, images, True)
    shutil.rmtree(images, ignore_errors=True)
    after_resume = 0
    for point in range(max(1, total - 4), total + 1):
        images = os.path.join(h.tmp_root, "img-%d" % point)
        before = faultlib.snapshot(w.pid)
        log = os.path.join(h.tmp_root, "fault-%d.log" % point)
        r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--leave-running", "--log-file", log], log=False,
                       env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": "INT"}, tag="dump-fault")
        what = "SIGINT at fault point %d of %d" % (point, total)
        resumed = RESUMED in read_text(log, "")
        if r.rc != 0 and resumed:
            after_resume += 1
            check("dump interrupted: pid %d left running" % w.pid in r.stderr,
                  "%s, after the resume: cryo should say the tree runs on\n%s" % (what, r.describe()))
        w = faultlib.check_after(h, w, before, images, r, "INT", True, what)
    check(after_resume >= 1, "no fault point of the last ones came after the resume (%d points)" % total)
    h.note("%d interrupts after the resume left the tree running and no image" % after_resume)
    faultlib.kill_tree(h, w.pid)
    h.wait_exit(w)


COW_LINE = re.compile(r"pid (\d+): [0-9.]+ [KMG]iB copied after the resume in [0-9.]+ ms \(copy-on-write; (\d+) write "
                      r"faults, (\d+) pages copied aside first, (\d+) of them through the spill file, at most "
                      r"([0-9.]+ [KMG]?i?B) in memory; (\d+) mremap and (\d+) munmap/madvise "
                      r"events, (\d+) pages kept from madvise discards\)")


def start_dirtier(h, rate):
    """dirtier (tests/workloads/dirtier.c): 64 MiB rewritten page after page
    at `rate` MiB/s, each page with the pattern of (page, generation); its
    verify checks every page against its write counter."""
    w = h.start_workload("dirtier", "64", str(rate), "nochurn")
    if os.path.exists(w.path("hold")):
        os.unlink(w.path("hold"))
    h.wait_ready(w, timeout=60)
    h.verify_ok(w, when="before the dump")
    return w


def test_cow_image_is_the_freeze(h):
    """Leave-running, copy-on-write: dirtier rewrites its 64 MiB as fast as it
    can from the resume on, while cryo copies them; the pages it writes first
    are copied aside on its write faults. The restored copy must hold the
    generation of the freeze on every page (its own counter, restored with
    it, says which): a page read after the program wrote it, or one copied
    twice, fails its verify. The original runs on, unharmed."""
    w = start_dirtier(h, 4000)
    before = faultlib.snapshot(w.pid)
    images = h.mkdir("img")
    r, log = dump(h, w, images, "--leave-running")
    m = COW_LINE.search(log)
    check(m is not None and int(m.group(1)) == w.pid, "no copy-on-write copy of pid %d in the log:\n%s"
          % (w.pid, log[-3000:]))
    faults, aside = int(m.group(2)), int(m.group(3))
    check(faults > 0 and aside > 0, "the program wrote no protected page during the copy (%d faults, %d copied "
          "aside): nothing was tested" % (faults, aside))
    check(in_order(log, RESUMED, "copied after the resume"), "the copy should come after the resume:\n" + log[-3000:])
    problem = faultlib.free_of_cryo(before)
    check(problem is None, "after the copy-on-write dump: %s" % problem)
    h.verify_ok(w, when="of the original after the copy-on-write dump")
    check(not uffd_registered(w.pid), "the original keeps VMAs registered with a userfaultfd")
    h.note("%d write faults during the copy, %d pages copied aside first" % (faults, aside))
    faultlib.kill_tree(h, w.pid)
    h.wait_exit(w)
    # Restored, dirtier would first write on from its counter (at most 64
    # pages with CTL/hold there), which would make good again the very pages
    # a wrong copy got wrong: with the hold it verifies the image's own.
    with open(w.path("hold"), "w"):
        pass
    rs = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(rs.pid)
    h.verify_ok(rw, when="after the restore of a copy-on-write dump")
    os.unlink(w.path("hold"))
    faultlib.kill_tree(h, rw.pid)


def uffd_registered(pid):
    return any(line.startswith("VmFlags:") and (" uw" in line or " um" in line)
               for line in read_text("/proc/%d/smaps" % pid, "").splitlines())


def test_cow_off(h):
    """--no-cow, and a tree whose memory is tracked (--track-mem: its VMAs
    belong to the tracker's userfaultfd): the memory is copied during the
    freeze, and the images restore."""
    for extra in ("--no-cow", "--track-mem"):
        w = start_dirtier(h, 200)
        images = h.mkdir("img" + extra.replace("-", "_"))
        r, log = dump(h, w, images, "--leave-running", extra)
        check(COW_LINE.search(log) is None, "%s: the memory was copied after the resume:\n%s" % (extra, log[-3000:]))
        h.verify_ok(w, when="of the original after dump %s" % extra)
        faultlib.kill_tree(h, w.pid)
        h.wait_exit(w)
        rs = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(rs.pid)
        h.verify_ok(rw, when="after the restore of a dump with " + extra)
        faultlib.kill_tree(h, rw.pid)


TESTS = [
    test_kill_mode_syncs_before_the_kill,
    test_no_sync_kill_mode,
    test_no_sync_leave_running,
    test_leave_running_resumes_before_the_sync,
    test_interrupt_after_the_resume,
    test_cow_image_is_the_freeze,
    test_cow_off,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
