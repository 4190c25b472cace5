#!/usr/bin/python3
"""End-to-end tests of unlinked files: regular files (dense, sparse, empty)
held open at their offsets, shared by dup and across processes, mapped only
(shared, private with copied pages, executable code), a deleted directory held
open and as the working directory, an unlinked FIFO with bytes waiting, and a
file deleted through one name that keeps another. The unlinked workload
verifies all of it itself (exact bytes, offsets, holes, st_nlink 0, links
"PATH (deleted)", mode, owner, times).

Run: test_unlinked.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402

SPARSE_SIZE = 1 << 30


def start(h):
    w = h.start_workload("unlinked")
    h.wait_ready(w, timeout=30)
    child = None
    for line in (cryotest.read_text(w.path("objects")) or "").splitlines():
        k, _, v = line.partition(" ")
        if k == "child":
            child = int(v)
    check(child, "%s: no objects file" % w.name)
    return w, child


def start_copy(h):
    """The workload started from a copy of its executable, in a directory of
    its own: (that directory, the copy, the workload, its child)."""
    exe_dir = h.mkdir("exe")
    exe = os.path.join(exe_dir, "unlinked")
    shutil.copy2(h.workload_path("unlinked"), exe)
    ctl = h.mkdir("unlinked")
    w = h.start("unlinked", [exe, ctl], ctl)
    h.wait_ready(w, timeout=30)
    child = int((cryotest.read_text(w.path("objects")) or "child 0").split()[1])
    return exe_dir, exe, w, child


def leftovers(w):
    """Names a restore made in the workload's directory and did not remove."""
    return sorted(n for n in os.listdir(w.ctl) if n.startswith(".cryo-unlinked"))


def check_image(h, images):
    shown = h.show_json(images)
    check("unlinked-files" in shown["features"], "image features %s lack 'unlinked-files'" % shown["features"])
    for name in ("files.img", "files-data.img"):
        check(os.path.isfile(os.path.join(images, name)), "no %s in the image" % name)
    # The 1 GiB sparse file stores its data only: far less than its size.
    data = os.path.getsize(os.path.join(images, "files-data.img"))
    check(data < 8 << 20, "files-data.img holds %d bytes: the holes of the sparse file were stored" % data)
    st = os.stat(os.path.join(images, "files-data.img"))
    check(st.st_blocks * 512 < 8 << 20, "files-data.img allocates %d bytes" % (st.st_blocks * 512))
    files = {os.path.basename(f["path"]): f for f in shown["unlinked_files"]}
    for name in ("dense", "sparse", "empty", "shared-map", "private-map", "code", "shared-fd", "gone", "inner"):
        check(name in files, "cryo show lists no unlinked file %r: %s" % (name, sorted(files)))
    check_eq((files["sparse"]["size"], files["sparse"]["stored"]), (SPARSE_SIZE, 4096 + 65536 + 4096),
             "size and stored bytes of the sparse file")
    check_eq((files["dense"]["stored"], files["dense"]["mode"]), ((1 << 20) + 3, 0o640), "dense file")
    check_eq(files["gone"]["kind"], "directory", "kind of gone")


def check_links(pid, ctl):
    """What /proc shows of the restored process: names followed by (deleted)."""
    for fd, name in ((40, "dense"), (43, "sparse"), (46, "gone"), (48, "fifo")):
        link = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        check_eq(link, "%s/%s (deleted)" % (ctl, name), "/proc/%d/fd/%d" % (pid, fd))
    check_eq(os.readlink("/proc/%d/cwd" % pid), "%s/gone (deleted)" % ctl, "/proc/%d/cwd" % pid)
    maps = cryotest.read_text("/proc/%d/maps" % pid) or ""
    for name in ("shared-map", "private-map", "code"):
        check("%s/%s (deleted)" % (ctl, name) in maps, "/proc/%d/maps shows no %s (deleted)" % (pid, name))


def restore_verify_exit(h, w, child, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(leftovers(w), [], "names the restore left in %s" % w.ctl)
    check_links(r.pid, os.path.realpath(w.ctl))
    check(proc_stat(child) is not None, "the child %d was not restored" % child)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, when=when + " (again)")
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid, child])


def test_unlinked_kill(h):
    w, child = start(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    check_image(h, images)
    restore_verify_exit(h, w, child, images, "after restore")


def test_unlinked_leave_running(h):
    w, child = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    # The original scribbles over every file as it exits; the restore brings
    # back what was dumped.
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([w.pid, child])
    restore_verify_exit(h, w, child, images, "after restore")


def test_unlinked_rewind(h):
    w, child = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    for i in range(2):
        # Each instance scribbles over every file before it exits: the next one
        # still starts from the image alone.
        restore_verify_exit(h, w, child, images, "of rewind instance %d" % (i + 1))


def test_unlinked_held_outside_refused(h):
    """An unlinked file also held by a process outside the tree (here: the
    test itself) is refused, naming it: the restored tree would have a copy of
    its own."""
    w, child = start(h)
    outside = os.open("/proc/%d/fd/40" % w.pid, os.O_RDONLY)
    try:
        # Before anything is written: no image directory, no page file.
        h.dump_refused(w.pid, ["pid %d fd 40" % w.pid, "unlinked file", "/dense",
                               "pid %d (fd %d)" % (os.getpid(), outside), "outside the dumped tree"])
    finally:
        os.close(outside)
    h.verify_ok(w, when="after the refused dump")
    h.verify_ok(w, exit=True, when="(exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def test_unlinked_failed_restore_leaves_nothing(h):
    """A restore that fails after the unlinked files were made (the executable
    is gone) leaves no name behind; the image still restores afterwards."""
    exe_dir, exe, w, child = start_copy(h)
    ctl = w.ctl
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    before = sorted(os.listdir(ctl))
    os.rename(exe, exe + ".away")
    r = h.restore(images, expect_ok=False)
    check(r.rc != 0, "restore without the executable succeeded")
    check(exe in r.message, "the error should name the executable %s: %s" % (exe, r.message))
    cryotest.wait_pids_gone([w.pid, child])
    check_eq(sorted(os.listdir(ctl)), before, "files in %s after the failed restore" % ctl)
    os.rename(exe + ".away", exe)
    restore_verify_exit(h, w, child, images, "after restoring again")


def test_unlinked_executable(h):
    """A program whose executable was deleted (no name left) runs from the
    copy in the image: /proc/PID/exe shows the name, deleted, in kill mode and
    rewind."""
    exe_dir, exe, w, child = start_copy(h)
    ctl = w.ctl
    os.unlink(exe)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    for i in range(2):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        check_eq(os.readlink("/proc/%d/exe" % r.pid), exe + " (deleted)", "/proc/%d/exe" % r.pid)
        check_eq(os.listdir(exe_dir), [], "names the restore left in %s" % exe_dir)
        rw = w.restored(r.pid)
        h.verify_ok(rw, when="after restore %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="after restore %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status after restore %d" % (i + 1))
        cryotest.wait_pids_gone([w.pid, child])


TESTS = [
    test_unlinked_kill,
    test_unlinked_leave_running,
    test_unlinked_rewind,
    test_unlinked_held_outside_refused,
    test_unlinked_failed_restore_leaves_nothing,
    test_unlinked_executable,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
