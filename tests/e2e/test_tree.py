#!/usr/bin/python3
"""End-to-end tests of process trees: PIDs, parents, sessions, process groups,
zombies, pipes with data in flight, shared file offsets and shared memory.
The tree workload verifies all of it itself.

Run: test_tree.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402


def image_pids(h, images):
    return [p["pid"] for p in h.show_json(images)["processes"]]




def tree_ids(root):
    """pid -> (ppid, pgid, sid, state) for the root and its descendants."""
    out = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        st = proc_stat(pid)
        if st is None:
            continue
        out[pid] = (st["ppid"], st["pgrp"], st["session"], st["state"] == "Z")
        for tid in os.listdir("/proc/%d/task" % pid) if os.path.isdir("/proc/%d/task" % pid) else []:
            kids = cryotest.read_text("/proc/%d/task/%s/children" % (pid, tid), "").split()
            todo.extend(int(k) for k in kids)
    return out


def start_tree(h, ring=4):
    w = h.start_workload("tree", str(ring))
    h.wait_ready(w, timeout=30)
    return w


def restore_and_verify(h, w, images, before, when, extra=()):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=extra)
    rw = w.restored(r.pid)
    after = tree_ids(r.pid)
    # The root's parent differs (it is reparented after a detached restore).
    strip = lambda ids: {pid: v if pid != w.pid else v[1:] for pid, v in ids.items()}  # noqa: E731
    check_eq(strip(after), strip(before), "pid -> (ppid, pgid, sid, zombie) of the tree " + when)
    h.verify_ok(rw, when=when)
    return rw


def test_tree_kill(h):
    w = start_tree(h)
    h.verify_ok(w, when="before dump")
    before = tree_ids(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_pids(h, images)
    check_eq(sorted(pids), sorted(before), "pids in the image")
    cryotest.wait_pids_gone(pids)
    rw = restore_and_verify(h, w, images, before, "after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored tree exit status")


def test_tree_leave_running(h):
    w = start_tree(h)
    before = tree_ids(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    # The original keeps every byte in its pipes and every process.
    h.verify_ok(w, when="of the original after dump --leave-running")
    check_eq(tree_ids(w.pid), before, "the original tree after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone(image_pids(h, images))
    # The original appended to the tree's shared log after the dump: a change
    # the program made itself, allowed by name.
    rw = restore_and_verify(h, w, images, before, "after restore", ["--allow-changed", w.path("shared.log")])
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored tree exit status")


def test_tree_rewind(h):
    w = start_tree(h)
    before = tree_ids(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_pids(h, images)
    cryotest.wait_pids_gone(pids)
    for i in range(3):
        # Each instance appends to the tree's shared log (open O_RDWR, at a
        # shared offset) before it exits: the next one is restored onto the
        # log as the program itself left it, which the test allows by name.
        extra = ["--allow-changed", w.path("shared.log")] if i else []
        rw = restore_and_verify(h, w, images, before, "of rewind instance %d" % (i + 1), extra)
        h.verify_ok(rw, exit=True, when="of rewind instance %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))
        cryotest.wait_pids_gone(pids)


def test_tree_200_ring(h):
    """200 processes passing tokens over pipes."""
    w = start_tree(h, ring=200)
    before = tree_ids(w.pid)
    check(len(before) >= 205, "tree has %d processes, expected >= 205" % len(before))
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone(image_pids(h, images), timeout=20)
    rw = restore_and_verify(h, w, images, before, "after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw, timeout=30), ("exit", 0), "restored tree exit status")


def test_big_tree_shared_tables(h):
    """200 processes in 11 sessions and 50 process groups, fd tables shared
    by groups of 2 and of 10 (CLONE_FILES), every one with a parent-death
    signal: restored twice from one image (kill mode), the bigtree workload
    checks ids, counting, the sharing of its fd tables (kcmp and an fd each
    partner opened) and the death signals itself."""
    w = h.start_workload("bigtree")
    h.wait_ready(w, timeout=60)
    before = tree_ids(w.pid)
    check_eq(len(before), 200, "processes in the bigtree workload")
    h.verify_ok(w, when="before the dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_pids(h, images)
    cryotest.wait_pids_gone(pids, timeout=20)
    for i in range(2):
        rw = restore_and_verify(h, w, images, before, "after restore %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="after restore %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw, timeout=30), ("exit", 0), "restored bigtree exit status")
        cryotest.wait_pids_gone(pids, timeout=20)


def test_tree_failed_restore_leaves_nothing(h):
    """A restore of a tree whose file changed since the dump (A1's mapped
    file) fails naming the file, and leaves no process behind: the restore
    refuses it before any process exists (files/changed_files.h); failures in
    the middle of the tree are covered by test_restore_faults.py."""
    w = start_tree(h)
    before = tree_ids(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_pids(h, images)
    cryotest.wait_pids_gone(pids)
    os.utime(w.path("a1.map"), (1, 1))
    r = h.restore(images, detach=True, expect_ok=False, expected_pid=w.pid)
    check(r.rc not in (0, "TIMEOUT"), "restore with a changed a1.map: exit status %r\n%s" % (r.rc, r.describe()))
    check("a1.map" in r.message and "changed since the dump" in r.message,
          "the error should name a1.map as changed: %s" % r.message)
    ghosts = set(v[1] for v in before.values()) | set(v[2] for v in before.values())
    cryotest.wait_pids_gone(sorted(set(pids) | (ghosts - {w.pid})))


COW_MIB = 32


def shared_pages(pid_a, pid_b, start, npages):
    """How many of npages pages at `start` pid_a and pid_b map to the same
    physical page (/proc/PID/pagemap, root sees the frame numbers)."""
    def frames(pid):
        with open("/proc/%d/pagemap" % pid, "rb") as f:
            f.seek(start // 4096 * 8)
            data = f.read(npages * 8)
        out = []
        for i in range(npages):
            e = int.from_bytes(data[i * 8:i * 8 + 8], "little")
            out.append(e & ((1 << 55) - 1) if e >> 63 else None)
        return out
    fa, fb = frames(pid_a), frames(pid_b)
    return sum(1 for x, y in zip(fa, fb) if x is not None and x == y)


def check_cow(h, w, pid, when):
    lay = h.read_layout(w)
    big, n = int(lay["big"], 16), int(lay["pages"])
    for k, mine in (("child1", 16), ("child2", 0)):
        child = int(lay[k])
        shared = shared_pages(pid, child, big, n)
        # One page more per verify is the parent's own (it writes page 100).
        check(shared >= n - mine - 4, "%s %s shares %d of %d pages with its parent, expected >= %d"
              % (when, k, shared, n, n - mine - 4))


def test_cow_shared_pages(h):
    """Pages a fork left shared copy-on-write are stored once and come back
    shared: the restored tree does not use twice the memory."""
    w = h.start_workload("cow", str(COW_MIB))
    h.wait_ready(w)
    check_cow(h, w, w.pid, "before the dump:")
    images = h.mkdir("img")
    # Reading the tree's memory must not unshare it (the original runs on).
    h.dump(w.pid, images, leave_running=True)
    check_cow(h, w, w.pid, "the original after dump --leave-running:")
    h.verify_ok(w, exit=True, when="of the original after dump --leave-running")
    check_eq(h.wait_exit(w), ("exit", 0), "original cow exit status")
    img = h.show_json(images)
    check("cow-shared" in img["features"], "image features lack cow-shared: %r" % img["features"])
    lay = h.read_layout(w)
    n = int(lay["pages"])
    stored = {p["pid"]: p["stored_pages"] for p in img["processes"]}
    inherited = {p["pid"]: p["inherited_pages"] for p in img["processes"]}
    check(stored[w.pid] >= n, "the parent stores %d pages, expected >= %d" % (stored[w.pid], n))
    for k in ("child1", "child2"):
        check(stored[int(lay[k])] < n // 4, "%s stores %d pages: the shared ones were stored again"
              % (k, stored[int(lay[k])]))
        check(inherited[int(lay[k])] >= n - 16 - 4, "%s: %d pages marked shared with the parent, expected >= %d"
              % (k, inherited[int(lay[k])], n - 20))
    pids = image_pids(h, images)
    for i in range(2):
        cryotest.wait_pids_gone(pids)
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        check_cow(h, w, r.pid, "restore %d:" % (i + 1))
        h.verify_ok(rw, when="after restore %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="after restore %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "restored cow exit status")


def test_pipe_held_outside(h):
    """A pipe end held by a process outside the tree (here: the harness) makes
    the dump fail, naming it, and leaves the process running."""
    ctl = h.mkdir("outside")
    p = subprocess.Popen(["/bin/sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, cwd=ctl)
    h.tracked_pids.append(p.pid)
    h.popens[p.pid] = p
    try:
        images = os.path.join(h.tmp_root, "img-pipe-outside")
        r = h.run_cryo(["dump", "-t", str(p.pid), "-D", images, "-vv"])
        check(r.rc != 0, "dump of a process whose pipe is read outside the tree succeeded")
        # Refused before anything is written: no image directory was made.
        check("pages written" not in (r.log or "") and "is dumping pid" not in (r.log or ""),
              "the refusal came after files were written:\n%s" % r.log)
        check(not os.path.exists(images), "the refused dump made %s" % images)
        msg = r.message
        check("pipe" in msg and str(os.getpid()) in msg,
              "error should name the pipe and the outside holder %d: %s" % (os.getpid(), msg))
        st = proc_stat(p.pid)
        check(st is not None and st["state"] == "S", "sleep disturbed by the refused dump: %r" % (st,))
    finally:
        p.stdout.close()


def start_fifo(h):
    w = h.start_workload("fifo")
    h.wait_ready(w)
    return w


def test_fifo_kill(h):
    w = start_fifo(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    img = h.show_json(images)
    check("fifos" in img["features"], "image features lack 'fifos': %r" % img["features"])
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (again, exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored fifo exit status")


def test_fifo_leave_running(h):
    w = start_fifo(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    # Nothing was consumed: the original still sees its stream and parked bytes.
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored fifo exit status")


def test_fifo_rewind(h):
    w = start_fifo(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_pids(h, images)
    for i in range(3):
        cryotest.wait_pids_gone(pids)
        # The FIFO files may be gone; they are recreated from the image.
        if i == 1:
            os.unlink(w.path("parked"))
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def test_fifo_held_outside(h):
    """A FIFO the harness also holds open is refused by name; the tree runs on."""
    w = start_fifo(h)
    fd = os.open(w.path("stream"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("img")])
        check(r.rc != 0, "dump of a tree whose FIFO is held outside it succeeded")
        check("FIFO" in r.message and w.path("stream") in r.message and str(os.getpid()) in r.message,
              "error should name the FIFO and the outside holder %d: %s" % (os.getpid(), r.message))
    finally:
        os.close(fd)
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "fifo exit status")


TESTS = [
    test_tree_kill,
    test_tree_leave_running,
    test_tree_rewind,
    test_tree_200_ring,
    test_big_tree_shared_tables,
    test_tree_failed_restore_leaves_nothing,
    test_cow_shared_pages,
    test_pipe_held_outside,
    test_fifo_kill,
    test_fifo_leave_running,
    test_fifo_rewind,
    test_fifo_held_outside,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
