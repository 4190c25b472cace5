#!/usr/bin/python3
"""End-to-end tests of many TCP connections against cryo's own fd limit
(issue 14: sockets at scale; base/fd_limit.h).

The workload (manyconns) holds N established loopback connections, both
ends in one process, 64 bytes queued each way on each, and checks after a
restore that every connection carries its queued bytes and a new round each
way, at the fds it opened them on, with its own RLIMIT_NOFILE.

cryo runs under a wrapper that lowers its RLIMIT_NOFILE before it starts
(`ulimit` in a shell, then exec): a soft limit below what the connections
need (cryo raises it to the hard limit), or a hard limit below it (the dump
is refused before anything is written, naming RLIMIT_NOFILE, the tree
untouched; a restore likewise fails before making anything).

Run: test_sockscale.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check  # noqa: E402
from test_tcp import check_no_lock, unlocking  # noqa: E402

# 2000 connections: 4000 sockets, above the 1024 soft limit cryo is given,
# below the machines' usual hard limit; the dump holds a duplicate of each
# socket, the restore's pool is numbered above the workload's ~4000 fds (its
# highest ~8000) and a duplicate of each socket takes a lower number.
N = 2000


class LimitedCryo:
    """cryo run with RLIMIT_NOFILE lowered (`soft`, and `hard` if given)
    through a shell wrapper; the harness runs the wrapper as `cryo`."""

    def __init__(self, h, soft, hard=None):
        self.h = h
        self.real = h.cryo
        self.path = os.path.join(h.tmp_root, "cryo-nofile-%s-%s" % (soft, hard or "same"))
        # The soft limit first: a hard limit below it is refused (EINVAL).
        lines = ["#!/bin/sh", "ulimit -Sn %d || exit 99" % soft]
        if hard is not None:
            lines.append("ulimit -Hn %d || exit 99" % hard)
        lines.append('exec "%s" "$@"' % self.real)
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.path, 0o700)

    def __enter__(self):
        self.h.cryo = self.path
        return self

    def __exit__(self, *exc):
        self.h.cryo = self.real
        return False


def start(h, n=N):
    w = h.start_workload("manyconns", str(n))
    h.wait_ready(w, timeout=60)
    return w


def verified(h, w, when):
    h.verify_ok(w, timeout=60, when=when)


def test_kill_above_soft_limit(h):
    """Kill mode, cryo's soft limit 1024: dumped and restored, every
    connection checked (without the raise, the dump fails with EMFILE)."""
    w = start(h)
    images = h.mkdir("img")
    with LimitedCryo(h, 1024):
        h.dump(w.pid, images)
        h.reap_original(w)
        r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the restore")
    verified(h, w.restored(r.pid), "after the restore")
    verified(h, w.restored(r.pid), "again")


def test_rewind_above_soft_limit(h):
    """--leave-running, the original checked and killed, the image restored
    (its queued bytes back): every connection checked."""
    w = start(h)
    images = h.mkdir("img")
    with LimitedCryo(h, 1024):
        h.dump(w.pid, images, leave_running=True)
        check_no_lock("after a dump --leave-running")
        verified(h, w, "of the original after the dump")
        h.kill_and_reap(w)
        r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the restore")
    verified(h, w.restored(r.pid), "after the rewind")


def test_above_hard_limit_refused(h):
    """cryo's hard limit (6000) enough for the dump (a duplicate of each of
    the 4000 sockets) but not for the restore (its pool numbered above the
    workload's ~4000 fds, ~8000): the dump is refused
    before anything is written, naming RLIMIT_NOFILE (a kill-mode dump would
    have lost the tree); the tree runs on untouched, every connection
    checked."""
    w = start(h)
    with LimitedCryo(h, 6000, hard=6000):
        h.dump_refused(w.pid, ["RLIMIT_NOFILE", "hard limit of 6000", "pid %d" % w.pid])
    check_no_lock("after the refused dump")
    verified(h, w, "after the refused dump")


def test_restore_above_hard_limit_fails_cleanly(h):
    """An image restored by a cryo whose hard limit is too low: refused
    before anything is made, naming RLIMIT_NOFILE; the same image then
    restores under the usual limit."""
    w = start(h)
    images = h.mkdir("img")
    with LimitedCryo(h, 1024):
        h.dump(w.pid, images)
    h.reap_original(w)
    with LimitedCryo(h, 6000, hard=6000):
        r = h.restore(images, detach=True, expect_ok=False)
    check(r.rc == 1, "restore under a hard limit of 6000 should fail (exit 1)\n%s" % r.describe())
    check("RLIMIT_NOFILE" in r.message and "hard limit of 6000" in r.message,
          "the failure should name the limit: %s" % r.message)
    check(not cryotest.pid_alive(w.pid), "pid %d exists after the failed restore" % w.pid)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the restore")
    verified(h, w.restored(r.pid), "after the restore")


TESTS = [unlocking(t) for t in [
    test_kill_above_soft_limit,
    test_rewind_above_soft_limit,
    test_above_hard_limit_refused,
    test_restore_above_hard_limit_fails_cleanly,
]]

if __name__ == "__main__":
    rc = cryotest.main(TESTS, description=__doc__)
    check_no_lock("after the suite")
    sys.exit(rc)
