#!/usr/bin/python3
"""File snapshots: `cryo dump --snapshot-path PATH` and `--snapshot-open-files`
carry files in the image; `cryo restore` puts them back before the tree runs.

- A directory tree (files with holes, a symbolic link, modes, an xattr, times,
  subdirectories) that the program made and closed is changed after the dump
  (files rewritten, deleted, added, a directory removed, a mode changed); the
  restored program walks it and finds it exactly as it left it. Kill,
  leave-running and rewind (restored twice, the tree changed again between).
  The same image restored with --no-restore-files: the program sees the
  changes (the test fails without the feature).
- The Python tempfile pattern (item 5): a tempfile.mkstemp file in /tmp and
  one in /dev/shm, written and closed; removed after the dump (a tmp cleaner,
  a reboot); the restored program opens them again and reads its data.
- sqlite mid-transaction with --snapshot-open-files: the original commits
  after a leave-running dump (its journal is gone, the database has the row);
  the restore puts the database and its -journal back and the restored
  program still holds its transaction (without the snapshot the restore
  fails: the journal is missing).
- --parent: an unchanged file is not stored again (the image's data file is
  smaller), and the incremental image restores it.
- Refusals before anything is written: a socket file, a FIFO, a device node,
  /proc.

Run: test_snapshot.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq  # noqa: E402
import test_sqlite  # noqa: E402

# Builds the tree (or reads the tmp files), then answers every <ctl>/check
# order with <ctl>/result: "ok" or what differs from what it made; <ctl>/exit
# ends it.
PROGRAM = r"""
import hashlib, os, stat, sys, tempfile, time
ctl, root = sys.argv[1], sys.argv[2]

def put(name, text):
    with open(ctl + "/" + name + ".tmp", "w") as f:
        f.write(text)
    os.rename(ctl + "/" + name + ".tmp", ctl + "/" + name)

def walk(top):
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec.append(hashlib.sha256(f.read()).hexdigest())
                rec.append(st.st_blocks * 512 < st.st_size)  # still sparse
                rec.append(sorted((x, os.getxattr(p, x)) for x in os.listxattr(p)))
            out[os.path.relpath(p, top)] = rec
    return out

if sys.argv[3] == "tree":
    os.makedirs(root + "/sub/deep")
    with open(root + "/a.txt", "w") as f:
        f.write("alpha\n" * 1000)
    with open(root + "/sub/b.bin", "wb") as f:
        f.write(os.urandom(200000))
    with open(root + "/sub/deep/sparse", "wb") as f:
        f.seek(64 << 20)
        f.write(b"end of a sparse file")
    os.setxattr(root + "/a.txt", "user.cryo", b"xattr value")
    os.chmod(root + "/sub/b.bin", 0o640)
    os.symlink("../a.txt", root + "/sub/link")
    os.utime(root + "/a.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    made = walk(root)
    def check():
        now = walk(root)
        if now == made:
            return "ok"
        diff = sorted(k for k in set(made) | set(now) if made.get(k) != now.get(k))
        return "differs: " + " ".join("%s: %r -> %r" % (k, made.get(k), now.get(k)) for k in diff)
else:
    made = {}
    for d in ("/tmp", "/dev/shm"):
        fd, path = tempfile.mkstemp(dir=d, prefix="cryo-snapshot-test-")
        data = os.urandom(100000)
        os.write(fd, data)
        os.close(fd)
        made[path] = data
    put("tmpfiles", " ".join(sorted(made)))
    def check():
        bad = []
        for path, data in made.items():
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        bad.append(path + " has other data")
            except OSError as e:
                bad.append("%s: %s" % (path, e))
        return "ok" if not bad else "differs: " + "; ".join(bad)

put("ready", str(os.getpid()))
while True:
    for order in ("check", "exit"):
        try:
            os.unlink(ctl + "/" + order)
        except FileNotFoundError:
            continue
        if order == "exit":
            sys.exit(0)
        put("result", check())
    time.sleep(0.01)
"""


def start(h, kind):
    ctl = h.mkdir("snapshot-" + kind)
    root = os.path.join(ctl, "tree")
    script = os.path.join(ctl, "program.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    w = h.start("snapshot-" + kind, [PYTHON, script, ctl, root, kind], ctl)
    h.wait_ready(w, timeout=30)
    return w, root


def ask(w, timeout=30):
    test_sqlite.order(w, "check")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        txt = cryotest.read_text(w.path("result"))
        if txt:
            os.unlink(w.path("result"))
            return txt.strip()
        time.sleep(0.01)
    cryotest.fail("%s: no result within %.0fs; stderr: %s" % (w.name, timeout, w.stderr()[-2000:]))


def mutate(root, round_):
    """Changes after the dump: rewritten, deleted, added, a directory gone, a mode."""
    with open(root + "/a.txt", "w") as f:
        f.write("changed %d\n" % round_)
    os.unlink(root + "/sub/link")
    subprocess.run(["rm", "-rf", root + "/sub/deep"], check=True)
    with open(root + "/sub/new-file-%d" % round_, "w") as f:
        f.write("made after the dump")
    os.mkdir(root + "/new-dir-%d" % round_)
    os.chmod(root + "/sub/b.bin", 0o600)
    with open(root + "/sub/b.bin", "r+b") as f:
        f.write(b"x")


def finish(h, w):
    test_sqlite.order(w, "exit")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of %s" % w.name)


def restore_and_check(h, w, images, what, extra=()):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=extra)
    rw = w.restored(r.pid)
    got = ask(rw)
    return rw, got


def test_tree_kill(h):
    w, root = start(h, "tree")
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--snapshot-path", root])
    h.reap_original(w)
    mutate(root, 1)
    # Without the files put back, the program sees the changes (what the
    # feature is for): then with them.
    rw, got = restore_and_check(h, w, images, "--no-restore-files", extra=["--no-restore-files"])
    check(got.startswith("differs:") and "a.txt" in got and "sub/deep/sparse" in got,
          "with --no-restore-files the program should see the changed tree: %r" % got)
    h.kill_and_reap(rw)
    rw, got = restore_and_check(h, w, images, "restore")
    check_eq(got, "ok", "the restored program's tree")
    check(not any(n.startswith(".cryo-") for _, ds, fs in os.walk(root) for n in ds + fs),
          "temporary names left in the tree: %s" % sorted(os.listdir(root)))
    finish(h, rw)


def test_tree_leave_running(h):
    w, root = start(h, "tree")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True, extra=["--snapshot-path", root])
    check_eq(ask(w), "ok", "the original's tree after the leave-running dump")
    mutate(root, 1)
    check(ask(w).startswith("differs:"), "the original should see the changed tree")
    finish(h, w)
    rw, got = restore_and_check(h, w, images, "restore")
    check_eq(got, "ok", "the restored program's tree")
    finish(h, rw)


def test_tree_rewind(h):
    w, root = start(h, "tree")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True, extra=["--snapshot-path", root])
    finish(h, w)
    for i in range(2):
        mutate(root, i + 1)
        rw, got = restore_and_check(h, w, images, "restore %d" % (i + 1))
        check_eq(got, "ok", "the restored program's tree in rewind instance %d" % (i + 1))
        finish(h, rw)


def tmp_files(w):
    return cryotest.read_text(w.path("tmpfiles")).split()


def run_tmpfiles(h, leave_running):
    w, _ = start(h, "tmpfiles")
    paths = tmp_files(w)
    try:
        images = h.mkdir("img")
        extra = []
        for p in paths:
            extra += ["--snapshot-path", p]
        h.dump(w.pid, images, leave_running=leave_running, extra=extra)
        if leave_running:
            finish(h, w)
        else:
            h.reap_original(w)
        for rnd in range(2 if leave_running else 1):
            for p in paths:  # a tmp cleaner, a reboot
                os.unlink(p)
            rw, got = restore_and_check(h, w, images, "restore")
            check_eq(got, "ok", "the restored program's tmp files (instance %d)" % (rnd + 1))
            finish(h, rw)
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)


def test_tmpfiles_kill(h):
    run_tmpfiles(h, False)


def test_tmpfiles_rewind(h):
    run_tmpfiles(h, True)


def test_sqlite_rewind_after_commit(h):
    """The issue's "Must hold": a rewind works after the original committed."""
    w, db, pids = test_sqlite.start_program(h, "python")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True, extra=["--snapshot-open-files"])
    carried = {e["path"] for e in h.show_json(images).get("snapshot", [])}
    check({db, db + "-journal"} <= carried, "the image should carry the database and its journal: %s" % carried)
    test_sqlite.order(w, "commit")
    check_eq(test_sqlite.wait_done(w), "commit before,python", "the original's view after its COMMIT")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of the original")
    cryotest.wait_pids_gone(pids)
    check(not os.path.exists(db + "-journal"), "the journal should be gone after the commit")
    # Without the files the journal is missing: refused, nothing left.
    r = h.restore(images, expect_ok=False, extra=["--no-restore-files"])
    check(not isinstance(r, cryotest.Restored) and "test.db-journal" in r.message,
          "restore without the files after the commit: status %s, %s" % (r.rc, r.message))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    test_sqlite.check_restored_transaction(h, w.restored(r.pid), db, "python")


def test_sqlite_kill(h):
    w, db, pids = test_sqlite.start_program(h, "python")
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--snapshot-open-files"])
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)
    # The database damaged meanwhile (a bad copy over it): put back.
    with open(db, "r+b") as f:
        f.write(b"garbage garbage garbage")
    r = h.restore(images, detach=True, expected_pid=w.pid)
    test_sqlite.check_restored_transaction(h, w.restored(r.pid), db, "python")


def data_size(images):
    return os.path.getsize(os.path.join(images, "snapshot-data.img"))


def test_parent_unchanged_not_stored(h):
    w, root = start(h, "tree")
    big = os.path.join(root, "big")
    with open(big, "wb") as f:
        f.write(os.urandom(8 << 20))
    first = h.mkdir("img1")
    h.dump(w.pid, first, leave_running=True, extra=["--snapshot-path", root])
    with open(root + "/a.txt", "a") as f:  # one small change
        f.write("more\n")
    second = h.mkdir("img2")
    h.dump(w.pid, second, leave_running=True, extra=["--snapshot-path", root, "--parent", first])
    check(data_size(second) < data_size(first) - (8 << 20),
          "the second image stores the unchanged 8 MiB again: %d vs %d bytes" % (data_size(second), data_size(first)))
    finish(h, w)
    os.unlink(big)
    mutate(root, 1)
    rw, got = restore_and_check(h, w, second, "restore of the incremental image")
    check(got.startswith("differs:") and "a.txt" in got, "a.txt was appended to before the second dump: %r" % got)
    check(os.path.getsize(big) == 8 << 20, "the unchanged file from the parent image was not put back")
    finish(h, rw)


def test_refused_by_name(h):
    w, root = start(h, "tree")
    sock_path = os.path.join(root, "sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    try:
        h.dump_refused(w.pid, [sock_path, "is a socket", "regular files, directories and symbolic links"],
                       extra_args=["--snapshot-path", root])
    finally:
        s.close()
        os.unlink(sock_path)
    fifo = os.path.join(root, "fifo")
    os.mkfifo(fifo)
    h.dump_refused(w.pid, [fifo, "is a FIFO"], extra_args=["--snapshot-path", root])
    os.unlink(fifo)
    h.dump_refused(w.pid, ["/dev/null", "is a character device"], extra_args=["--snapshot-path", "/dev/null"])
    # A second name of a file outside the snapshot: the restore would split
    # the two names (both inside are carried as links).
    linked = os.path.join(root, "linked")
    with open(linked, "w") as f:
        f.write("one inode")
    outside = os.path.join(os.path.dirname(root), "linked-outside")
    os.link(linked, outside)
    h.dump_refused(w.pid, [linked, "2 hard links, of which the snapshot holds 1"],
                   extra_args=["--snapshot-path", root])
    os.unlink(outside)
    # An append-only file would come back as an ordinary one.
    subprocess.run(["chattr", "+a", linked], check=True)
    try:
        h.dump_refused(w.pid, [linked, "append-only"], extra_args=["--snapshot-path", root])
    finally:
        subprocess.run(["chattr", "-a", linked], check=True)
    os.unlink(linked)
    h.dump_refused(w.pid, ["/proc/", "on a proc file system"], extra_args=["--snapshot-path", "/proc/self/status"])
    finish(h, w)


TESTS = [
    test_tree_kill,
    test_tree_leave_running,
    test_tree_rewind,
    test_tmpfiles_kill,
    test_tmpfiles_rewind,
    test_sqlite_rewind_after_commit,
    test_sqlite_kill,
    test_parent_unchanged_not_stored,
    test_refused_by_name,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
