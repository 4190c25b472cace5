#!/usr/bin/python3
"""End-to-end tests of guard regions (madvise MADV_GUARD_INSTALL): the guards
workload holds guarded pages in private anonymous memory (also in a child
that shares those pages copy-on-write and guards differently), in a private
file mapping and in shared anonymous memory. After a restore it checks itself
that its pagemap shows a guard on exactly the guarded pages, that touching one
still raises SIGSEGV (in a grandchild), and every other page's bytes. In kill,
leave-running and rewind modes, and for an incremental dump (--parent). The
suite runs also with CRYO_PRETEND_MISSING=pagemap-scan (the guards read from
pagemap bit 58 instead of PAGE_IS_GUARD).

Run: test_guards.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402

FEATURE = "guard-regions"


def start(h):
    w = h.start_workload("guards")
    h.wait_ready(w, timeout=30)
    child = int(h.read_layout(w)["child"])
    h.verify_ok(w, when="before the dump")
    return w, child


def check_feature(h, images):
    feats = h.show_json(images)["features"]
    check(FEATURE in feats, "image features %s lack %r" % (feats, FEATURE))


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def dump_killed(h):
    w, child = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    return w, child, images


def test_kill(h):
    w, child, images = dump_killed(h)
    check_feature(h, images)
    restore_verify_exit(h, w, images, "after restore")


def test_leave_running(h):
    w, child = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([w.pid, child])
    check_feature(h, images)
    restore_verify_exit(h, w, images, "after restore")


def test_rewind(h):
    w, child, images = dump_killed(h)
    for i in range(2):
        restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
        cryotest.wait_pids_gone([w.pid, child])


def test_incremental(h):
    """A dump against a parent image keeps the guards (the unchanged pages
    are in the parent's page files, the guards in the new image)."""
    w, child = start(h)
    parent = h.mkdir("parent")
    h.dump(w.pid, parent, leave_running=True)
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--parent", parent])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    check_feature(h, images)
    restore_verify_exit(h, w, images, "after restore of the incremental image")


TESTS = [test_kill, test_leave_running, test_rewind, test_incremental]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
