#!/usr/bin/python3
"""End-to-end tests of Linux AIO contexts (io_setup(2), the /[aio] mapping):
an idle context, used before the dump, is used again after the restore
through the same aio_context_t (reads submitted and reaped, io_destroy), in
kill, leave-running and rewind modes; see tests/workloads/aioctx.c. A
context with a request in flight, with a completion not reaped, or in a
process of several threads, is refused by name, the workload untouched.
cryo killed or interrupted at every fault point of a dump (the probe's batch
among them) leaves the original's context working.

Run: test_aioctx.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
import faultlib  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402


def start(h, *args):
    w = h.start_workload("aioctx", *args)
    h.wait_ready(w)
    return w


def check_image(h, images):
    img = h.show_json(images)
    check("aio-context" in img.get("features", []), "image features lack aio-context: %r" % img.get("features"))


def test_aioctx_kill(h):
    w = start(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check_image(h, images)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (io_destroy)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_aioctx_leave_running(h):
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit: io_destroy)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([p["pid"] for p in h.show_json(images)["processes"]])
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_aioctx_rewind(h):
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(3):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, when="of rewind instance %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="of rewind instance %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def expect_refusal(h, w, names, what):
    images = h.mkdir("img")
    r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0 and r.rc != "TIMEOUT", "dump of a process holding %s: %s" % (what, r.describe()))
    for n in [str(w.pid), "/[aio]", "AIO context"] + names:
        check(n in r.message, "dump error does not name %r (%s)\n%s" % (n, what, r.describe()))
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory")
    st = proc_stat(w.pid)
    check(st is not None and st["state"] in ("S", "R"), "workload disturbed by the refused dump: %r" % (st,))
    check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status after the refused dump")


def test_aioctx_inflight_refused(h):
    w = start(h, "inflight")
    expect_refusal(h, w, ["1 requests in flight"], "a poll in flight")


def test_aioctx_unreaped_refused(h):
    w = start(h, "unreaped")
    expect_refusal(h, w, ["1 completions not yet reaped"], "a completion not reaped")


def test_aioctx_threads_refused(h):
    w = start(h, "threads")
    expect_refusal(h, w, ["2 threads"], "a context in a process of two threads")


def test_aioctx_cryo_killed(h):
    """cryo killed (SIGKILL) or interrupted (SIGINT) at every fault point of
    a leave-running dump, the AIO probe's batch among them: the original is
    left running, untraced, and its context still works (head == tail, reads
    on it; faultlib.check_after)."""
    w = start(h)
    images = os.path.join(h.tmp_root, "img-count")
    total = faultlib.count_points(h, w, images, True)
    shutil.rmtree(images, ignore_errors=True)
    h.note("aioctx, leave-running mode: %d fault points" % total)
    check(total > 0, "no fault points counted")
    for point in range(1, total + 1):
        for sig in ("KILL", "INT") if point % 4 == 0 else ("KILL",):
            what = "aioctx, SIG%s at fault point %d of %d" % (sig, point, total)
            w = faultlib.interrupted_dump(h, w, os.path.join(h.tmp_root, "img-%d" % point), True, sig, what,
                                          point=point)
    h.verify_ok(w, exit=True, when="at the end")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status at the end")


TESTS = [
    test_aioctx_kill,
    test_aioctx_leave_running,
    test_aioctx_rewind,
    test_aioctx_inflight_refused,
    test_aioctx_unreaped_refused,
    test_aioctx_threads_refused,
    test_aioctx_cryo_killed,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
