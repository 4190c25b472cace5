#!/usr/bin/python3
"""End-to-end tests of the fallbacks for kernels older than this one
(CRYO_PRETEND_MISSING makes cryo behave as if features were absent):

- `cryo check` names each missing feature, what cryo does without it, and
  the hard requirements; a hard requirement cannot be pretended away;
- without PAGEMAP_SCAN (Linux 6.7) the dump reads /proc/PID/pagemap and
  stores the same pages (the image of an idle process is the same both ways);
- without MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3) a process registered
  for private expedited membarrier(2) is still refused, by name;
- without PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15) POSIX timers with the ids
  a new process gets (0, 1, ...) still come back;
- without the eventfd-semaphore fdinfo line (Linux 6.6) an eventfd's mode is
  found by reading it, its count put back.
- without MADV_COLLAPSE (Linux 6.1) memory that was in transparent huge
  pages comes back in small pages, the same bytes (test_thp.py).

The core suites also run whole with CRYO_PRETEND_MISSING=pagemap-scan
(ctest: e2e_no_pagemap_scan_*).

Run: test_fallbacks.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_status  # noqa: E402


class Pretend:
    """CRYO_PRETEND_MISSING=names for the cryo runs inside the block."""

    def __init__(self, names):
        self.names = names

    def __enter__(self):
        self.old = os.environ.get("CRYO_PRETEND_MISSING")
        os.environ["CRYO_PRETEND_MISSING"] = self.names

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("CRYO_PRETEND_MISSING", None)
        else:
            os.environ["CRYO_PRETEND_MISSING"] = self.old


def test_check_names_missing_features(h):
    with Pretend("pagemap-scan,membarrier-registrations,timer-restore-ids"):
        r = h.run_cryo(["check"], log=False, tag="check")
    check_eq(r.rc, 0, "cryo check exit status (every pretended feature has a fallback)\n" + r.describe())
    out = r.stdout
    for line in ["FAIL  pagemap-scan", "FAIL  membarrier-registrations", "FAIL  timer-restore-ids",
                 "      without it (Linux 6.7): the dump reads the 64-bit entries of /proc/PID/pagemap",
                 "      without it (Linux 6.3): a process registered for private expedited membarrier(2)",
                 "      without it (Linux 6.15): POSIX timers are restored only when their ids are 0, 1, ... n-1",
                 "hard requirements: ptrace-seize, xsave, process-vm-readv, pidfd-getfd, clone3-set-tid, "
                 "pr-set-mm-map, capabilities\n",
                 "missing, cryo works without them (see above): pagemap-scan, membarrier-registrations, "
                 "timer-restore-ids\n",
                 "verdict: can checkpoint"]:
        check(line in out, "cryo check should say %r:\n%s" % (line, r.describe()))
    r = h.run_cryo(["check"], log=False, tag="check")
    check("missing, cryo works without them" not in r.stdout and "FAIL  pagemap-scan" not in r.stdout,
          "without CRYO_PRETEND_MISSING nothing is missing on this kernel:\n" + r.describe())


def test_hard_requirement_cannot_be_pretended(h):
    with Pretend("pagemap-scan,xsave,bogus"):
        r = h.run_cryo(["check"], log=False, tag="check")
    check(r.rc != 0, "cryo accepted CRYO_PRETEND_MISSING=xsave\n" + r.describe())
    check("CRYO_PRETEND_MISSING names 'xsave' (a hard requirement), 'bogus' (no such feature)" in r.message,
          "the refusal should name both:\n" + r.describe())


def test_pagemap_read_same_image(h):
    """An idle process dumped twice (leave-running with PAGEMAP_SCAN, then
    kill mode reading pagemap): the same pages; restored, it checks its memory."""
    w = h.start_workload("state")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    with_scan = h.mkdir("img-scan")
    h.dump(w.pid, with_scan, leave_running=True)
    without = h.mkdir("img-read")
    with Pretend("pagemap-scan"):
        r = h.dump(w.pid, without)
    check("reading /proc/PID/pagemap instead" in (r.log or ""),
          "the dump should say it read pagemap:\n" + r.describe())
    a, b = h.show_json(with_scan), h.show_json(without)
    check_eq(summary(b), summary(a), "page runs stored reading pagemap vs. PAGEMAP_SCAN")
    h.reap_original(w)
    rr = h.restore(without, detach=True, expected_pid=w.pid)
    rw = w.restored(rr.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def summary(img):
    """Per process: its stored pages, and each VMA's."""
    out = []
    for p in img["processes"]:
        out.append((p["pid"], p["stored_pages"], [(v["start"], v["pages"]) for v in p["vmas"]]))
    check(out and out[0][1] > 0, "no pages stored? %r" % out)
    return out


def test_membarrier_without_get_registrations_refused(h):
    w = h.start_workload("audit", "membarrier")
    h.wait_ready(w)
    images = h.mkdir("img")
    with Pretend("membarrier-registrations"):
        r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0, "dump of a membarrier-registered process succeeded\n" + r.describe())
    for part in ["pid %d" % w.pid, "MEMBARRIER_CMD_PRIVATE_EXPEDITED"]:
        check(part in r.message, "the refusal should name %r:\n%s" % (part, r.describe()))
    check_eq(os.listdir(images), [], "files of the images directory after the refused dump")
    check_eq(proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def test_timers_without_chosen_ids(h):
    """eventfds has two POSIX timers, ids 0 and 1: they come back without
    PR_TIMER_CREATE_RESTORE_IDS (created in id order)."""
    w = h.start_workload("eventfds")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    with Pretend("timer-restore-ids"):
        h.dump(w.pid, images)
        h.reap_original(w)
        r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_eventfd_mode_by_reading(h):
    """Without the fdinfo line (Linux 6.6) the semaphore mode is found by a
    read of cryo's duplicate: the original's eventfds keep their counts
    (leave-running dump, it checks them), and the restored ones have the
    right mode and count (kill-mode dump)."""
    w = h.start_workload("eventfds")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    with Pretend("eventfd-semaphore"):
        h.dump(w.pid, h.mkdir("img-left"), leave_running=True)
        h.verify_ok(w, when="after a leave-running dump (counts put back)")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


TESTS = [
    test_check_names_missing_features,
    test_hard_requirement_cannot_be_pretended,
    test_pagemap_read_same_image,
    test_membarrier_without_get_registrations_refused,
    test_timers_without_chosen_ids,
    test_eventfd_mode_by_reading,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
