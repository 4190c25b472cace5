#!/usr/bin/python3
"""End-to-end tests of memory attributes: mlock (also on fault, and beyond a
lowered RLIMIT_MEMLOCK), mlockall(MCL_FUTURE) for later mappings,
MADV_SEQUENTIAL/RANDOM, MAP_NORESERVE (private and shared), MAP_DROPPABLE,
mseal, THP disable (PR_SET_THP_DISABLE, also "except advised") and membarrier
registrations, in a parent and its child. The memattrs workload checks each
itself (its own VmFlags, VmLck, mincore, prctl, membarrier). (What is refused,
guard regions for one, is tested by test_audit.py.)

Run: test_memattrs.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402

# Which inventory feature each mode's state needs.
FEATURES = {
    "mlock": "vma-attributes",
    "mlock-limit": "vma-attributes",
    "mlockall": "mm-attributes",
    "madvise": "vma-attributes",
    "noreserve": "map-noreserve",
    "droppable": "vma-attributes",
    "mseal": "vma-attributes",
    "thp": "mm-attributes",
    "membarrier": "mm-attributes",
}


def start(h, mode):
    w = h.start_workload("memattrs", mode)
    h.wait_ready(w, timeout=30)
    return w, int(h.read_layout(w)["child"])


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def kill_mode(h, mode):
    w, child = start(h, mode)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    feats = h.show_json(images)["features"]
    check(FEATURES[mode] in feats, "image features %s lack %r" % (feats, FEATURES[mode]))
    restore_verify_exit(h, w, images, "after restore")


def make_kill_test(mode):
    def test(h):
        kill_mode(h, mode)
    test.__name__ = "test_" + mode.replace("-", "_")
    return test


def test_all_leave_running(h):
    w, child = start(h, "all")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([w.pid, child])
    feats = h.show_json(images)["features"]
    for f in ("vma-attributes", "mm-attributes"):
        check(f in feats, "image features %s lack %r" % (feats, f))
    restore_verify_exit(h, w, images, "after restore")


def test_all_rewind(h):
    w, child = start(h, "all")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    for i in range(2):
        restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
        cryotest.wait_pids_gone([w.pid, child])


TESTS = [make_kill_test(m) for m in FEATURES] + [test_all_leave_running, test_all_rewind]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
