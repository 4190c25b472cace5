#!/usr/bin/python3
"""End-to-end tests of page files written past the page cache (O_DIRECT,
src/mem/direct_write.h): a kill-mode dump that is made durable writes the
pages of every big process (more than 4 MiB of pages) with O_DIRECT from the
page ring; --no-sync, --leave-running and compressed dumps keep writing
through the page cache. Each test reads which path was taken from the dump's
debug log ("(written with O_DIRECT)"), and the restored program checks every
byte itself:
  - lazymem: a region of many 4 MiB runs with a per-page pattern, and a region
    where only every fourth page was written (holes that must read zero);
  - thp: regions in transparent huge pages and not (bytes, VmFlags and
    AnonHugePages checked by the workload), restored twice (rewind);
  - --compress in kill mode: compressed frames, through the page cache;
  - the image directory on a small tmpfs: the disk fills in the middle of the
    direct writes; the dump fails naming the page file and "no space left",
    the process runs on untouched and no image is left.
No test asserts a time (speed is in bench/bench_dump.py).

Run: test_direct_pages.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, read_text  # noqa: E402

DIRECT = "(written with O_DIRECT)"
COPIED = "KiB of pages copied in"


def dump(h, w, images, *extra, expect_ok=True):
    """A dump with a debug log; returns (CryoResult, log text)."""
    os.makedirs(images, exist_ok=True)
    log = os.path.join(h.tmp_root, "dump-%s.log" % os.path.basename(images))
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--log-file", log] + list(extra), log=False)
    text = read_text(log, "")
    if expect_ok:
        check_eq(r.rc, 0, "dump %s exit status\n%s\n%s" % (" ".join(extra), r.describe(), text[-3000:]))
    return r, text


def copy_lines(log):
    return [line for line in log.splitlines() if COPIED in line]


def check_direct(log, want, what):
    lines = copy_lines(log)
    check(lines, "%s: no page copy in the dump's log" % what)
    for line in lines:
        check((DIRECT in line) == want, "%s: page copy %s O_DIRECT: %s"
              % (what, "without" if want else "with", line.split(" debug ", 1)[-1]))


def restore_verify(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid])


def start_lazymem(h, mib):
    w = h.start_workload("lazymem", str(mib))
    h.wait_ready(w)
    return w


def test_kill_mode_pattern_and_holes(h):
    """96 MiB of patterned pages (24 runs of 4 MiB) and a region of holes,
    written with O_DIRECT, restored twice: every byte right each time."""
    w = start_lazymem(h, 96)
    h.verify_ok(w, when="before the dump")
    images = h.mkdir("img")
    _, log = dump(h, w, images)
    check_direct(log, True, "kill-mode dump")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    restore_verify(h, w, images, "after restore")
    restore_verify(h, w, images, "after restoring it again")


def test_kill_mode_huge_pages(h):
    """Memory in transparent huge pages and not, written with O_DIRECT: the
    thp workload checks its bytes, flags and AnonHugePages after a restore."""
    w = h.start_workload("thp")
    h.wait_ready(w, timeout=30)
    images = h.mkdir("img")
    _, log = dump(h, w, images)
    check_direct(log, True, "kill-mode dump of thp")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    restore_verify(h, w, images, "after restore")
    restore_verify(h, w, images, "after restoring it again (rewind)")


def test_other_modes_through_the_page_cache(h):
    """--leave-running and --no-sync dumps do not write with O_DIRECT; each
    image restores right."""
    w = start_lazymem(h, 32)
    running = h.mkdir("img-running")
    _, log = dump(h, w, running, "--leave-running")
    check_direct(log, False, "--leave-running dump")
    h.verify_ok(w, when="of the original after dump --leave-running")
    nosync = h.mkdir("img-nosync")
    _, log = dump(h, w, nosync, "--no-sync")
    check_direct(log, False, "--no-sync dump")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    for images, when in ((nosync, "--no-sync"), (running, "--leave-running")):
        restore_verify(h, w, images, "after restoring the %s image" % when)


def test_compressed_kill_mode(h):
    """A kill-mode dump with --compress writes compressed frames through the
    page cache (no O_DIRECT) and restores right."""
    w = start_lazymem(h, 32)
    images = h.mkdir("img")
    _, log = dump(h, w, images, "--compress", "zstd")
    check(DIRECT not in log, "a compressed kill-mode dump wrote with O_DIRECT")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    restore_verify(h, w, images, "after restoring the compressed image")


def test_disk_full_during_direct_writes(h):
    """The image directory is a 16 MiB tmpfs (tmpfs takes O_DIRECT): the
    64 MiB page file fills it during the direct writes. The dump fails naming
    the page file and the full disk, the process runs on untouched and
    verifies, and no image is left."""
    w = start_lazymem(h, 64)
    before = cryotest.proc_maps(w.pid)
    mnt = h.mkdir("small-fs")
    r = cryotest.subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", mnt],
                                stdin=cryotest.subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "mount of a 16 MiB tmpfs on %s failed: %s" % (mnt, r.stderr.strip()))
    try:
        images = os.path.join(mnt, "img")
        r, log = dump(h, w, images, expect_ok=False)
        check(r.rc not in (0, "TIMEOUT"), "dump into a full tmpfs: status %s\n%s" % (r.rc, r.describe()))
        msg = r.message.lower()
        check("no space left" in msg, "the error should name the full disk: %s" % r.message)
        check("pages-%d.img" % w.pid in r.message, "the error should name the page file: %s" % r.message)
        check("O_DIRECT" in r.message, "the error should come from the direct write: %s" % r.message)
        check(not os.path.exists(images) or not os.listdir(images),
              "the failed dump left files: %s" % (os.listdir(images) if os.path.exists(images) else None))
        st = cryotest.proc_status(w.pid)
        check(st is not None and st["TracerPid"] == "0" and st["State"][0] in "SR",
              "pid %d after the failed dump: %s" % (w.pid, st and (st["TracerPid"], st["State"])))
        check_eq(cryotest.proc_maps(w.pid), before, "maps of pid %d after the failed dump" % w.pid)
        h.verify_ok(w, when="after the dump that filled the disk")
    finally:
        u = cryotest.subprocess.run(["umount", mnt], stdin=cryotest.subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=30)
    check(u.returncode == 0, "umount %s failed: %s" % (mnt, u.stderr.strip()))
    h.verify_ok(w, exit=True, when="after the failed dump (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "lazymem exit status")


TESTS = [test_kill_mode_pattern_and_holes, test_kill_mode_huge_pages, test_other_modes_through_the_page_cache,
         test_compressed_kill_mode, test_disk_full_during_direct_writes]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
