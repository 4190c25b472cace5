#!/usr/bin/python3
"""End-to-end tests of files of hugetlbfs (features hugetlbfs-file and
hugetlb-private-file): the hugefile workload holds, in mode "file", a file
of a hugetlbfs mount the test makes (2 MiB pages) open at an offset and
mapped shared and private (the private mapping's first huge page copied on
write, so it differs from the file) and an unlinked hugetlbfs file mapped
shared; in mode "memfd", a hugetlb memfd held as an fd and mapped private,
its first page copied on write. After a restore the workload checks every
byte, the fd's offset, path and file system, and the page size of each
mapping (smaps KernelPageSize, VmFlags ht). In kill, leave-running and
rewind modes; the file is made again if it was removed after the dump; a
restore with too few free huge pages for the object and the private
mapping's copies fails before anything runs, naming how many it needs; a
restore whose directory is no longer on a hugetlbfs mount fails naming it,
with nothing left behind.

The tests reserve the huge pages they need themselves (test_hugetlb.Pool: the
pool's size is put back after); where the kernel cannot reserve them, the
test says so in a NOTE and checks nothing more.

Run: test_hugefile.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_hugetlb import MB2, Pool, skipped  # noqa: E402


class HugeMount:
    """A hugetlbfs mount of 2 MiB pages on a directory of the test, named to
    the workload by $HUGE_MOUNT; unmounted after the block."""

    def __init__(self, h):
        self.h = h
        self.dir = h.mkdir("hugetlbfs")

    def __enter__(self):
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", self.dir], check=True)
        os.environ["HUGE_MOUNT"] = self.dir
        return self

    def unmount(self):
        if self.dir:
            subprocess.run(["umount", self.dir], check=True)
            self.dir = None

    def __exit__(self, exc_type, *exc):
        os.environ.pop("HUGE_MOUNT", None)
        if not self.dir:
            return
        # A test that failed half-way may leave a process holding a file of
        # the mount: everything the test started goes first (by pid).
        if exc_type is not None:
            self.h.cleanup()
        r = subprocess.run(["umount", self.dir], capture_output=True, text=True)
        if r.returncode != 0 and exc_type is None:
            raise cryotest.TestFailure("umount %s: %s" % (self.dir, r.stderr.strip()))


def features(h, images):
    return h.show_json(images)["features"]


def check_features(h, images, want):
    got = features(h, images)
    for f in want:
        check(f in got, "image features %s lack %r" % (got, f))


def start(h, mode):
    w = h.start_workload("hugefile", mode)
    h.wait_ready(w, timeout=60)
    h.verify_ok(w, when="before the dump", timeout=60)
    return w


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when, timeout=60)
    h.verify_ok(rw, exit=True, when=when + " (exit)", timeout=60)
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid])


MODES = {
    "file": ["hugetlbfs-file", "hugetlb-private-file", "hugetlb"],
    "memfd": ["hugetlb-private-file", "hugetlb-shared", "hugetlb"],
}


def kill_test(mode, remove_file=False):
    def test(h):
        with Pool(MB2, 16) as pool:
            if not pool.ok:
                return skipped(h, pool)
            with HugeMount(h) as mnt:
                w = start(h, mode)
                images = h.mkdir("img")
                h.dump(w.pid, images)
                h.reap_original(w)
                cryotest.wait_pids_gone([w.pid])
                check_features(h, images, MODES[mode])
                if remove_file:
                    os.unlink(os.path.join(mnt.dir, "huge.data"))
                restore_verify_exit(h, w, images, "after restore")
                if mode == "file":
                    check_eq(sorted(os.listdir(mnt.dir)), ["huge.data"], "files on the mount after the restore")
    test.__name__ = "test_%s_kill%s" % (mode, "_file_removed" if remove_file else "")
    return test


def leave_running_test(mode):
    def test(h):
        with Pool(MB2, 16) as pool:
            if not pool.ok:
                return skipped(h, pool)
            with HugeMount(h):
                w = start(h, mode)
                images = h.mkdir("img")
                h.dump(w.pid, images, leave_running=True)
                h.verify_ok(w, when="of the original after dump --leave-running")
                h.verify_ok(w, exit=True, when="of the original (exit)")
                check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
                cryotest.wait_pids_gone([w.pid])
                restore_verify_exit(h, w, images, "after restore")
    test.__name__ = "test_%s_leave_running" % mode
    return test


def rewind_test(mode):
    def test(h):
        with Pool(MB2, 16) as pool:
            if not pool.ok:
                return skipped(h, pool)
            with HugeMount(h):
                w = start(h, mode)
                images = h.mkdir("img")
                h.dump(w.pid, images)
                h.reap_original(w)
                cryotest.wait_pids_gone([w.pid])
                for i in range(2):
                    restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
    test.__name__ = "test_%s_rewind" % mode
    return test


def test_file_mount_gone(h):
    """The file's directory is no longer a hugetlbfs mount at restore: the
    restore fails naming a file and the directory, and leaves no process and
    no file behind."""
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        with HugeMount(h) as mnt:
            w = start(h, "file")
            images = h.mkdir("img")
            h.dump(w.pid, images)
            h.reap_original(w)
            cryotest.wait_pids_gone([w.pid])
            d = mnt.dir
            mnt.unmount()
            r = h.restore(images, expect_ok=False)
            check(r.rc != 0, "the restore without the hugetlbfs mount succeeded\n" + r.describe())
            for words in ("hugetlbfs file " + d + "/", "its directory " + d + "/", "no longer on a hugetlbfs mount"):
                check(words in r.message, "the failure should say %r:\n%s" % (words, r.describe()))
            check(not os.path.exists("/proc/%d" % w.pid), "pid %d exists after the failed restore" % w.pid)
            check_eq(os.listdir(d), [], "files in the directory after the failed restore")


def test_memfd_too_few_free_huge_pages(h):
    """The memfd's 2 pages and its private mapping's 2 (a private hugetlb
    mapping reserves its whole size at mmap): with 3 free huge pages the
    restore fails before it creates any process, naming 4; with 4 it works."""
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w = start(h, "memfd")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid])
        pool.set_extra(3)
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0, "the restore with too few huge pages succeeded\n" + r.describe())
        for words in ("needs 4 free huge pages of 2 MiB", "the system has 3"):
            check(words in r.message, "the failure should say %r:\n%s" % (words, r.describe()))
        check(not os.path.exists("/proc/%d" % w.pid), "pid %d exists after the failed restore" % w.pid)
        pool.set_extra(4)
        restore_verify_exit(h, w, images, "after restore with just enough huge pages")


TESTS = [kill_test("file"), kill_test("file", remove_file=True), leave_running_test("file"), rewind_test("file"),
         test_file_mount_gone,
         kill_test("memfd"), leave_running_test("memfd"), rewind_test("memfd"), test_memfd_too_few_free_huge_pages]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
