#!/usr/bin/python3
"""End-to-end tests of the copy-on-write leave-running dump (mem/cow_copy.h)
while the program changes its mappings or rewrites its memory (issue 13):
  - mremap right after the resume: the moved pages keep their protection
    (UFFD_EVENT_REMAP) and are read at their new place; the dump is made
    once and restores to the freeze's content;
  - two slots swapped by mremap: each address holds the other's protected
    pages, whose bits say nothing of it; the image still holds each
    address's own content;
  - madvise(MADV_DONTNEED) of slots the copy has not reached: their caller
    waits until cryo reads the event, and cryo copies the pages aside first
    (mem/cow_discard.cc); the dump is made once and restores to the
    freeze's content;
  - munmap right after the resume: pages cryo had not copied are gone (the
    kernel reports it after the pages are freed); the copy stops, the
    partial image is removed and the dump is made again with the memory
    copied during the freeze; that image restores to its freeze's content;
  - a program rewriting its memory during the copy: the pages copied aside
    are bounded in memory (CRYO_COW_ASIDE_KIB here, 1 MiB by default), the
    rest go through the spill file, and the image is the freeze's;
  - cryo's peak RSS stays <= 16 MiB during such a copy (issue 13).
The workloads check their own bytes (mapchurn: every slot against its
generation; dirtier: every page against its write counter), the original
and the restored copy alike; the restored copy is held (CTLDIR/hold) so that
it verifies the image's pages, not ones it wrote again.

Run: test_cowchurn.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
import faultlib  # noqa: E402
from cryotest import check, check_eq, read_text  # noqa: E402

COW_LINE = re.compile(r"pid (\d+): [0-9.]+ [KMG]iB copied after the resume in [0-9.]+ ms \(copy-on-write; (\d+) write "
                      r"faults, (\d+) pages copied aside first, (\d+) of them through the spill file, at most "
                      r"([0-9.]+) ([KMG]?i?B) in memory; (\d+) mremap and (\d+) munmap/madvise "
                      r"events, (\d+) pages kept from madvise discards\)")
PEAK_LINE = re.compile(r"cryo's peak RSS: (\d+) KiB \(VmHWM\)")
AGAIN = "dumping again with the memory copied during the freeze"
UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def dump(h, w, images, env=None):
    log = os.path.join(h.tmp_root, "dump-%s.log" % os.path.basename(images))
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--leave-running", "--log-file", log], log=False,
                   env=env)
    text = read_text(log, "")
    check_eq(r.rc, 0, "dump exit status\n%s\n%s" % (r.describe(), text[-3000:]))
    return text


def restore_held(h, w, images, when):
    """The original killed; the image restored with CTLDIR/hold, verified."""
    faultlib.kill_tree(h, w.pid)
    h.wait_exit(w)
    with open(w.path("hold"), "w"):
        pass
    rs = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(rs.pid)
    h.verify_ok(rw, when=when)
    os.unlink(w.path("hold"))
    faultlib.kill_tree(h, rw.pid)


def start_mapchurn(h, mode):
    w = h.start_workload("mapchurn", mode)
    h.wait_ready(w, timeout=60)
    h.verify_ok(w, when="before the dump")
    return w


def dump_while_moving(h, w, name, attempts=5, saw=lambda m: int(m.group(7)) > 0):
    """Leave-running dumps of `w` until one saw the program move a slot
    during its copy (on a quiet machine the copy may end before the
    program's next move; `saw`: what counts): (images, log, COW_LINE match
    or None) of the last."""
    for i in range(attempts):
        images = h.mkdir("%s-%d" % (name, i))
        log = dump(h, w, images)
        m = COW_LINE.search(log)
        if m is None or saw(m):
            break
        h.verify_ok(w, when="of the original after a dump that saw no change")
    return images, log, m


def test_remap_followed(h):
    """mremap of slots the copy has not reached: followed to their new place,
    no second dump, the image the freeze's."""
    w = start_mapchurn(h, "remap")
    images, log, m = dump_while_moving(h, w, "img")
    check(m is not None and int(m.group(1)) == w.pid, "no copy-on-write copy of pid %d:\n%s" % (w.pid, log[-3000:]))
    check(int(m.group(7)) > 0, "the program moved nothing during the copy: nothing was tested\n" + log[-2000:])
    check(AGAIN not in log, "an mremap made the dump start again:\n" + log[-3000:])
    h.note(m.group(0))
    h.verify_ok(w, when="of the original after the dump")
    restore_held(h, w, images, "after the restore (mremap during the copy)")


def test_swap_followed(h):
    """Two slots trading places by mremap (through a spare) before the copy
    reaches them: each address then holds the other's protected pages,
    whose protection bits say nothing of it; the image must still hold each
    address's own freeze content (copied aside at the first move)."""
    w = start_mapchurn(h, "swap")
    images, log, m = dump_while_moving(h, w, "img-swap")
    if m is not None:
        h.note(m.group(0))
        check(int(m.group(7)) > 0, "the program moved nothing during the copy: nothing was tested\n" + log[-2000:])
    else:
        check(AGAIN in log, "no copy-on-write copy of pid %d:\n%s" % (w.pid, log[-3000:]))
    h.verify_ok(w, when="of the original after the dump")
    restore_held(h, w, images, "after the restore (slots swapped by mremap during the copy)")


def unmapped_redumped(h, mode, name):
    w = start_mapchurn(h, mode)
    images = h.mkdir("img-" + mode)
    log = dump(h, w, images)
    check(AGAIN in log, "%s of memory not yet copied should make the dump start again:\n%s" % (name, log[-3000:]))
    check("copy-on-write dump" in log and ("the program unmapped" in log or "the program discarded" in log
                                             or "was unmapped, discarded or moved" in log),
          "the first dump's failure should name the change:\n" + log[-3000:])
    h.verify_ok(w, when="of the original after the dump")
    restore_held(h, w, images, "after the restore (%s during the copy)" % name)


def test_unmap_redumped(h):
    """munmap of slots not yet copied: their content is gone; the dump is
    made again, copied during the freeze, and restores right."""
    unmapped_redumped(h, "unmap", "munmap")


def test_dontneed_kept(h):
    """madvise(MADV_DONTNEED) of slots not yet copied: the pages are copied
    aside while the caller waits for its event to be read; no second dump,
    the image the freeze's."""
    w = start_mapchurn(h, "dontneed")
    images, log, m = dump_while_moving(h, w, "img-dontneed", saw=lambda m: int(m.group(9)) > 0)
    check(m is not None and int(m.group(1)) == w.pid, "no copy-on-write copy of pid %d (a discard made the dump "
          "start again?):\n%s" % (w.pid, log[-3000:]))
    check(int(m.group(8)) > 0 and int(m.group(9)) > 0, "the program discarded nothing the copy had not reached: "
          "nothing was tested\n" + log[-2000:])
    check(AGAIN not in log, "an madvise made the dump start again:\n" + log[-3000:])
    h.note(m.group(0))
    h.verify_ok(w, when="of the original after the dump")
    restore_held(h, w, images, "after the restore (MADV_DONTNEED during the copy)")


def test_aside_bounded(h):
    """dirtier rewrites 64 MiB as fast as it can from the resume on; with the
    copies aside limited to 16 KiB in memory, the rest go through the spill
    file, and the image is still the freeze's, page for page."""
    w = h.start_workload("dirtier", "64", "4000", "nochurn")
    if os.path.exists(w.path("hold")):
        os.unlink(w.path("hold"))
    h.wait_ready(w, timeout=60)
    images = h.mkdir("img-aside")
    log = dump(h, w, images, env={"CRYO_COW_ASIDE_KIB": "16"})
    m = COW_LINE.search(log)
    check(m is not None and int(m.group(1)) == w.pid, "no copy-on-write copy of pid %d:\n%s" % (w.pid, log[-3000:]))
    aside, spilled = int(m.group(3)), int(m.group(4))
    in_memory = float(m.group(5)) * UNIT[m.group(6)]
    check(aside > 4, "the program wrote few protected pages during the copy (%d copied aside): nothing was tested"
          % aside)
    check(in_memory <= 16 << 10, "%d bytes of copies aside held in memory, past the 16 KiB limit" % in_memory)
    # (a slot in memory taken back by the copy is used again)
    check(spilled >= aside // 2, "%d of %d pages copied aside went through the spill file" % (spilled, aside))
    check(not [f for f in os.listdir(images) if "aside" in f], "the spill file is left in the image: %s"
          % os.listdir(images))
    h.note("%d pages copied aside, %d through the spill file" % (aside, spilled))
    h.verify_ok(w, when="of the original after the dump")
    restore_held(h, w, images, "after the restore (copies aside spilled)")


def test_small_dumper(h):
    """Issue 13, a small dumper: cryo's peak RSS (VmHWM, logged at the end of
    the dump) stays <= 16 MiB through a copy-on-write dump of dirtier
    rewriting its 64 MiB as fast as it can: the copies aside at their default
    bound (1 MiB in memory), the ring, cryo's own text. (22-24 MiB before
    branch cowsmall.)"""
    w = h.start_workload("dirtier", "64", "4000", "nochurn")
    if os.path.exists(w.path("hold")):
        os.unlink(w.path("hold"))
    h.wait_ready(w, timeout=60)
    images = h.mkdir("img-small")
    log = dump(h, w, images)
    m = COW_LINE.search(log)
    check(m is not None and int(m.group(1)) == w.pid, "no copy-on-write copy of pid %d:\n%s" % (w.pid, log[-3000:]))
    peak = PEAK_LINE.search(log)
    check(peak is not None, "the dump did not log its peak RSS:\n" + log[-2000:])
    kib = int(peak.group(1))
    h.note("peak RSS %d KiB; %s" % (kib, m.group(0)))
    check(kib <= 16 << 10, "cryo's peak RSS was %d KiB, past 16 MiB" % kib)
    h.verify_ok(w, when="of the original after the dump")
    faultlib.kill_tree(h, w.pid)
    h.wait_exit(w)


TESTS = [
    test_remap_followed,
    test_swap_followed,
    test_unmap_redumped,
    test_dontneed_kept,
    test_aside_bounded,
    test_small_dumper,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
