#!/usr/bin/python3
"""End-to-end tests of hugetlb memory (MAP_HUGETLB): the huge workload holds
private anonymous huge pages of 2 MiB (written whole, in part, not at all,
split by mprotect; a child shares them copy-on-write and writes one anew) or
one of 1 GiB, and checks after a restore its bytes and the page size of its
mappings (smaps KernelPageSize, VmFlags ht). In kill, leave-running and
rewind modes. A restore with too few free huge pages fails before it creates
anything, naming how many it needs and /proc/sys/vm/nr_hugepages.

Shared hugetlb memory (feature hugetlb-shared): the workload's "shared" mode
holds shared anonymous MAP_HUGETLB memory, a hugetlb memfd (mapped and as an
fd) and a SysV SHM_HUGETLB segment, all shared with a child; at each verify
each process checks the content and page sizes and that a token the other
wrote is there (the sharing is still shared). "shared1g": one shared page of
1 GiB. A restore of them with too few huge pages fails before anything runs
and leaves no process, segment or huge page behind. (Files on a hugetlbfs
mount and private mappings of hugetlb memfds: test_hugefile.py.)

The tests reserve the huge pages they need themselves (the pool's size is put
back after); where the kernel cannot reserve them (fragmented memory, no 1 GiB
pages), the test says so in a NOTE and checks nothing more.

Run: test_hugetlb.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402

FEATURE = "hugetlb"
SHARED_FEATURE = "hugetlb-shared"
MB2 = "/sys/kernel/mm/hugepages/hugepages-2048kB/"
GB1 = "/sys/kernel/mm/hugepages/hugepages-1048576kB/"


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def write_int(path, n):
    with open(path, "w") as f:
        f.write("%d\n" % n)


class Pool:
    """`extra` more huge pages in the pool of `sysdir` for the block; the
    pool's size put back after. `ok` is False (with `why`) if the kernel
    could not reserve them."""

    def __init__(self, sysdir, extra):
        self.knob = sysdir + "nr_hugepages"
        self.free = sysdir + "free_hugepages"
        self.extra = extra

    def __enter__(self):
        self.old = read_int(self.knob) if os.path.exists(self.knob) else None
        self.ok, self.why = False, ""
        if self.old is None:
            self.why = "this kernel has no pool %s" % self.knob
            return self
        write_int(self.knob, self.old + self.extra)
        got = read_int(self.knob) - self.old
        self.ok = got >= self.extra
        if not self.ok:
            self.why = "the kernel reserved %d of %d huge pages asked in %s" % (got, self.extra, self.knob)
        return self

    def set_extra(self, n):
        write_int(self.knob, self.old + n)

    def __exit__(self, *exc):
        if self.old is not None:
            write_int(self.knob, self.old)


def skipped(h, pool):
    h.note("SKIPPED, checked nothing: " + pool.why)


def huge_pages_in_use(sysdir):
    """Pages of the pool of `sysdir` taken or reserved (by anyone)."""
    return read_int(sysdir + "nr_hugepages") - read_int(sysdir + "free_hugepages") + read_int(sysdir + "resv_hugepages")


def sysv_segments():
    """The shmids of /proc/sysvipc/shm."""
    lines = (cryotest.read_text("/proc/sysvipc/shm") or "").splitlines()[1:]
    return sorted(int(l.split()[1]) for l in lines if l.strip())


def start(h, mode):
    w = h.start_workload("huge", mode)
    h.wait_ready(w, timeout=60)
    child = int(h.read_layout(w)["child"])
    h.verify_ok(w, when="before the dump", timeout=60)
    return w, [p for p in (w.pid, child) if p > 0]


def check_feature(h, images, feature=FEATURE):
    feats = h.show_json(images)["features"]
    check(feature in feats, "image features %s lack %r" % (feats, feature))


def check_shared_image(h, images, page_kb, kinds):
    """The image holds one object per shared hugetlb object (however many
    processes map it), each with its huge page size."""
    shown = h.show_json(images)
    check(SHARED_FEATURE in shown["features"], "image features %s lack %r" % (shown["features"], SHARED_FEATURE))
    # (The workload's board, shared anonymous memory of small pages, is not hugetlb.)
    got = sorted((o["kind"], o["huge_page_size"]) for o in shown["shm_objects"] if o.get("huge_page_size"))
    check_eq(got, sorted((k, page_kb << 10) for k in kinds), "shared memory objects (kind, huge page size)")


def dump_killed(h, mode, timeout=cryotest.CRYO_TIMEOUT):
    """Starts the workload in `mode`, dumps it (kill mode), waits for it to
    be gone: (workload, its pids, the images directory)."""
    w, pids = start(h, mode)
    images = h.mkdir("img")
    h.dump(w.pid, images, timeout=timeout)
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)
    return w, pids, images


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when, timeout=60)
    h.verify_ok(rw, exit=True, when=when + " (exit)", timeout=60)
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


# Mode 2m: the parent reserves 4 pages, the child's copy on write takes one;
# restored, parent and child map 4 each.
def test_2m_kill(h):
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "2m")
        check_feature(h, images)
        restore_verify_exit(h, w, images, "after restore")


def test_2m_leave_running(h):
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids = start(h, "2m")
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        h.verify_ok(w, when="of the original after dump --leave-running")
        h.verify_ok(w, exit=True, when="of the original (exit)")
        check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
        cryotest.wait_pids_gone(pids)
        check_feature(h, images)
        restore_verify_exit(h, w, images, "after restore")


def test_2m_rewind(h):
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "2m")
        for i in range(2):
            restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
            cryotest.wait_pids_gone(pids)


def test_too_few_free_huge_pages(h):
    """The restore needs 8 huge pages: with 7 free it fails before it creates
    any process, naming 8 and /proc/sys/vm/nr_hugepages; with 8 it works."""
    with Pool(MB2, 16) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "2m")
        pool.set_extra(7)
        check_eq(read_int(MB2 + "free_hugepages") - read_int(MB2 + "resv_hugepages"), 7, "free huge pages")
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0, "the restore with too few huge pages succeeded\n" + r.describe())
        for words in ("needs 8 free huge pages of 2 MiB", "the system has 7", "/proc/sys/vm/nr_hugepages"):
            check(words in r.message, "the failure should say %r:\n%s" % (words, r.describe()))
        for pid in pids:
            check(not os.path.exists("/proc/%d" % pid), "pid %d exists after the failed restore" % pid)
        pool.set_extra(8)
        restore_verify_exit(h, w, images, "after restore with just enough huge pages")


def test_1g_kill(h):
    with Pool(GB1, 2) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "1g", timeout=120)
        check_feature(h, images)
        restore_verify_exit(h, w, images, "after restore")


# Mode shared: S (2 pages), M (1), V (2): 5 huge pages of 2 MiB per instance.
SHARED_KINDS = ["anon", "memfd", "sysv"]


def test_shared_kill(h):
    with Pool(MB2, 12) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "shared")
        check_shared_image(h, images, 2048, SHARED_KINDS)
        restore_verify_exit(h, w, images, "after restore")


def test_shared_leave_running(h):
    with Pool(MB2, 12) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids = start(h, "shared")
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        h.verify_ok(w, when="of the original after dump --leave-running")
        h.verify_ok(w, exit=True, when="of the original (exit)")
        check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
        cryotest.wait_pids_gone(pids)
        check_shared_image(h, images, 2048, SHARED_KINDS)
        restore_verify_exit(h, w, images, "after restore")


def test_shared_rewind(h):
    with Pool(MB2, 12) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "shared")
        for i in range(2):
            restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
            cryotest.wait_pids_gone(pids)


def test_shared_too_few_free_huge_pages(h):
    """The restore of the shared objects needs 5 huge pages: with 4 free it
    fails before it creates any process, naming 5, and leaves no segment
    and no huge page taken; with 5 it works."""
    with Pool(MB2, 12) as pool:
        if not pool.ok:
            return skipped(h, pool)
        w, pids, images = dump_killed(h, "shared")
        pool.set_extra(4)
        check_eq(read_int(MB2 + "free_hugepages") - read_int(MB2 + "resv_hugepages"), 4, "free huge pages")
        segs, used = sysv_segments(), huge_pages_in_use(MB2)
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0, "the restore with too few huge pages succeeded\n" + r.describe())
        for words in ("needs 5 free huge pages of 2 MiB", "the system has 4", "/proc/sys/vm/nr_hugepages"):
            check(words in r.message, "the failure should say %r:\n%s" % (words, r.describe()))
        for pid in pids:
            check(not os.path.exists("/proc/%d" % pid), "pid %d exists after the failed restore" % pid)
        check_eq(sysv_segments(), segs, "SysV segments after the failed restore")
        check_eq(huge_pages_in_use(MB2), used, "huge pages in use after the failed restore")
        pool.set_extra(5)
        restore_verify_exit(h, w, images, "after restore with just enough huge pages")


def shared_1g_test(name):
    def test(h):
        with Pool(GB1, 1) as pool:
            if not pool.ok:
                return skipped(h, pool)
            if name == "leave_running":
                w, pids = start(h, "shared1g")
                images = h.mkdir("img")
                h.dump(w.pid, images, leave_running=True, timeout=120)
                h.verify_ok(w, when="of the original after dump --leave-running", timeout=60)
                h.verify_ok(w, exit=True, when="of the original (exit)", timeout=60)
                check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
                cryotest.wait_pids_gone(pids)
            else:
                w, pids, images = dump_killed(h, "shared1g", timeout=120)
            check_shared_image(h, images, 1 << 20, ["anon"])
            for i in range(2 if name == "rewind" else 1):
                restore_verify_exit(h, w, images, "after restore %d" % (i + 1))
                cryotest.wait_pids_gone(pids)
    test.__name__ = "test_shared_1g_" + name
    return test


TESTS = [test_2m_kill, test_2m_leave_running, test_2m_rewind, test_too_few_free_huge_pages, test_1g_kill] + \
    [test_shared_kill, test_shared_leave_running, test_shared_rewind, test_shared_too_few_free_huge_pages] + \
    [shared_1g_test(n) for n in ("kill", "leave_running", "rewind")]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
