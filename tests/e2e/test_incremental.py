#!/usr/bin/python3
"""End-to-end tests of incremental dumps (`cryo dump --parent DIR`).

The incr workload keeps 16 MiB of memory it rewrites a few pages of at each
step the test asks for (step 1 also unmaps a region and maps a new one); it
checks every byte of its memory against the step it is at. Each test takes a
--leave-running parent image, moves the workload on, dumps it again with
--parent and restores the incremental image (kill and rewind modes, a chain of
three), compares it byte for byte with a full dump of the same moment
(`cryo show --compare-pages`), and checks what must be refused: a parent that
is missing or was replaced, a parent dumped in kill mode. A child forked after
the parent image has no pages in it and is stored in full.

Run: test_incremental.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail  # noqa: E402


def start(h, *args):
    # Without rseq: the kernel writes the rseq area (glibc's, in the TLS)
    # whenever a task returns to user space on another CPU, which the remote
    # system calls of every dump make a stopped process do. Two dumps of the
    # same stopped process then differ there, and compare-pages would say so.
    os.environ["GLIBC_TUNABLES"] = "glibc.pthread.rseq=0"
    try:
        w = h.start_workload("incr", *args)
    finally:
        del os.environ["GLIBC_TUNABLES"]
    h.wait_ready(w, timeout=30)
    return w


def step(h, w, n):
    """Moves the workload to step n; returns the forked child's pid (0: none)."""
    tmp = w.path("step.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % n)
    os.rename(tmp, w.path("step"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        txt = cryotest.read_text(w.path("stepped"), "")
        if txt.endswith("\n") and int(txt.split()[0]) == n:
            return int(txt.split()[1])
        check(cryotest.pid_alive(w.pid), "incr (pid %d) died moving to step %d: %s" % (w.pid, n, w.stderr()))
        time.sleep(0.01)
    fail("incr did not reach step %d" % n)


def page_bytes(images):
    return sum(os.path.getsize(os.path.join(images, n)) for n in os.listdir(images) if n.startswith("pages-"))


def incremental_dump(h, w, images, parent, leave_running=False, relative=False):
    """--parent as an absolute path (recorded so), or relative to cryo's
    working directory (recorded relative to the image)."""
    r = h.dump(w.pid, images, leave_running=leave_running,
               extra=["--parent", os.path.relpath(parent) if relative else parent])
    show = h.show_json(images)
    check("incremental" in show["features"], "features of %s lack 'incremental': %s" % (images, show["features"]))
    check_eq(show["parent"]["dir"], os.path.relpath(parent, images) if relative else parent,
             "parent named by " + images)
    return r, show


def verify_restored(h, w, images, want_step, when, stopped=False):
    # Step 0 in the step file: the restored workload stays at the step its
    # memory says (it would move on to a later step the file names).
    tmp = w.path("step.tmp")
    with open(tmp, "w") as f:
        f.write("0\n")
    os.rename(tmp, w.path("step"))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    if stopped:
        h.wait_state(r.pid, "T")
        os.kill(r.pid, signal.SIGCONT)
    line = h.verify_ok(rw, when=when)
    check("step=%d" % want_step in line, "%s: the restored workload is at %s, expected step=%d" % (when, line, want_step))
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid])


def test_kill_mode(h):
    w = start(h)
    parent = h.mkdir("parent")
    h.dump(w.pid, parent, leave_running=True)
    step(h, w, 1)
    # Stopped, so that the full dump and the incremental one see the same
    # bytes (its stack too); the restored process comes back stopped.
    os.kill(w.pid, signal.SIGSTOP)
    h.wait_state(w.pid, "T")
    full = h.mkdir("full")
    h.dump(w.pid, full, leave_running=True)
    child = h.mkdir("child")
    _, show = incremental_dump(h, w, child, parent)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    proc = show["processes"][0]
    check(proc["parent_pages"] > 3000, "only %d pages taken from the parent" % proc["parent_pages"])
    # The verification: the same pages as the full dump of that moment.
    r = h.run_cryo(["show", child, "--compare-pages", full], tag="compare")
    check(r.rc == 0, "the incremental image differs from the full dump\n%s" % r.describe())
    pb, cb, fb = page_bytes(parent), page_bytes(child), page_bytes(full)
    h.note("page files: parent %d KiB, full dump %d KiB, incremental %d KiB" % (pb >> 10, fb >> 10, cb >> 10))
    check(cb * 4 < fb, "the incremental image (%d bytes of pages) is not much smaller than a full one (%d)" % (cb, fb))
    verify_restored(h, w, child, 1, "after restoring the incremental image", stopped=True)


def test_rewind_and_chain_of_three(h):
    w = start(h)
    p0, p1, p2 = h.mkdir("p0"), h.mkdir("p1"), h.mkdir("p2")
    h.dump(w.pid, p0, leave_running=True)
    step(h, w, 1)
    incremental_dump(h, w, p1, p0, leave_running=True, relative=True)
    step(h, w, 2)
    step(h, w, 3)
    _, show = incremental_dump(h, w, p2, p1, leave_running=True, relative=True)
    check_eq(len(show["parent"]["chain"]), 2, "chain of %s" % p2)
    step(h, w, 4)
    h.verify_ok(w, when="of the original after three dumps")
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    # Rewind: each image of the chain, newest first, twice the newest.
    verify_restored(h, w, p2, 3, "rewind to the third image")
    verify_restored(h, w, p2, 3, "rewind to the third image again")
    verify_restored(h, w, p1, 1, "rewind to the second image")
    verify_restored(h, w, p0, 0, "rewind to the first image")


def test_parent_missing_or_replaced(h):
    w = start(h)
    parent = h.mkdir("parent")
    h.dump(w.pid, parent, leave_running=True)
    step(h, w, 1)
    child = h.mkdir("child")
    incremental_dump(h, w, child, parent, leave_running=True)
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    moved = parent + ".moved"
    os.rename(parent, moved)
    r = h.restore(child, expect_ok=False)
    check(r.rc != 0 and "parent image" in r.message and "missing" in r.message and parent in r.message,
          "a missing parent should be refused by name\n%s" % r.describe())
    check(not cryotest.pid_alive(w.pid), "the refused restore left pid %d" % w.pid)
    # Another image in the parent's place (a dump of another process).
    other = h.start_workload("sleep")
    h.dump(other.pid, parent, leave_running=True)
    h.kill_and_reap(other)
    r = h.restore(child, expect_ok=False)
    check(r.rc != 0 and "not the image" in r.message and parent in r.message,
          "a replaced parent should be refused by name\n%s" % r.describe())
    check(not cryotest.pid_alive(w.pid), "the refused restore left pid %d" % w.pid)
    shutil.rmtree(parent)
    os.rename(moved, parent)
    verify_restored(h, w, child, 1, "with the parent back")


def test_kill_mode_parent_refused(h):
    w = start(h)
    parent = h.mkdir("parent")
    h.dump(w.pid, parent)  # kill mode: the tree is gone
    h.reap_original(w)
    w2 = start(h)
    r = h.dump(w2.pid, h.mkdir("child"), expect_ok=False, extra=["--parent", parent])
    check(r.rc != 0 and "leave-running" in r.message and parent in r.message,
          "a kill-mode parent should be refused by name\n%s" % r.describe())
    check_eq(cryotest.proc_status(w2.pid)["TracerPid"], "0", "tracer of the workload after the refusal")
    h.verify_ok(w2, when="after the refused dump")


def test_forked_child_stored_in_full(h):
    w = start(h, "fork")
    parent = h.mkdir("parent")
    h.dump(w.pid, parent, leave_running=True)
    child_pid = step(h, w, 1)
    check(child_pid > 0, "no child forked")
    step(h, w, 2)
    images = h.mkdir("child")
    _, show = incremental_dump(h, w, images, parent)
    by_pid = {p["pid"]: p for p in show["processes"]}
    check_eq(by_pid[child_pid]["parent_pages"], 0, "pages of the forked child taken from the parent image")
    check(by_pid[w.pid]["parent_pages"] > 3000, "the root took only %d pages from the parent"
          % by_pid[w.pid]["parent_pages"])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child_pid])
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    try:
        os.unlink(w.path("child-result"))
    except FileNotFoundError:
        pass
    with open(w.path("child-verify"), "w") as f:
        f.write("1\n")
    deadline = time.monotonic() + 20
    while not (cryotest.read_text(w.path("child-result"), "") or "").endswith("\n"):
        check(time.monotonic() < deadline, "the restored child wrote no result")
        time.sleep(0.01)
    line = cryotest.read_text(w.path("child-result"))
    check(line.startswith("OK step=2"), "the restored child: %s" % line)
    h.verify_ok(rw, exit=True, when="(exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status")


TESTS = [test_kill_mode, test_rewind_and_chain_of_three, test_parent_missing_or_replaced,
         test_kill_mode_parent_refused, test_forked_child_stored_in_full]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
