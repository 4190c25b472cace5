#!/usr/bin/python3
"""Golden images: every image under tests/golden/ made by an earlier cryo must
still load, show and restore, and the ticker inside must count on.

Run: test_golden.py --cryo PATH --workloads DIR [NAME ...]
"""
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
sys.path.insert(0, GOLDEN)

import cryotest  # noqa: E402
import make_golden  # noqa: E402
from cryotest import check, check_eq, fail, proc_stat  # noqa: E402


def ticks():
    with open(make_golden.DIR + "/out") as f:
        return [line.strip() for line in f if line.strip()]


def restore_golden(h, images):
    info = h.show_json(images)
    check_eq(info["root_pid"], make_golden.PID, "pid in %s" % images)
    check(info["format_version"] >= 1, "format version of %s" % images)
    make_golden.setup()
    pids = [p["pid"] for p in info["processes"]]
    for pid in pids:
        if proc_stat(pid) is not None:
            fail("pid %d, needed by the golden image, is in use on this machine: %r" % (pid, proc_stat(pid)))
    # setup() made the program and its output file anew (other inodes, the
    # output emptied): every file the image refers to changed since the dump,
    # by construction. Refused by default, even in an image older than the
    # check; the test says the change is expected.
    refused = h.restore(images, expect_ok=False)
    check(refused.rc != 0 and make_golden.DIR + "/out" in refused.message and "changed since the dump" in refused.message,
          "restore of %s onto files made anew was not refused: %s" % (images, refused.message))
    for pid in pids:
        check(proc_stat(pid) is None, "pid %d exists after the refused restore" % pid)
    r = h.restore(images, detach=True, expected_pid=make_golden.PID, extra=["--ignore-changed-files"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(ticks()) < 5:
        time.sleep(0.05)
    lines = ticks()
    check(len(lines) >= 5, "the restored ticker wrote %r" % lines)
    check("CORRUPT" not in lines, "the restored ticker found its state corrupted")
    nums = [int(x.split()[1]) for x in lines]
    check(nums[0] > 0, "the ticker restarted from 0 instead of continuing: %r" % nums[:5])
    check_eq(nums, list(range(nums[0], nums[0] + len(nums))), "tick numbers")
    for pid in pids:
        check(proc_stat(pid) is not None, "pid %d of the golden image is not running after the restore" % pid)
    for pid in pids:  # the root first: its children come to the harness
        h.cleanup_one(pid)


def make_test(images):
    def test(h):
        restore_golden(h, images)
    test.__name__ = "test_golden_" + os.path.basename(images).replace("-", "_").replace(".", "_")
    return test


TESTS = [make_test(d) for d in sorted(glob.glob(os.path.join(GOLDEN, "v*")))]

if __name__ == "__main__":
    if not TESTS:
        sys.exit("no golden images under " + GOLDEN)
    sys.exit(cryotest.main(TESTS, description=__doc__))
