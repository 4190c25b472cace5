#!/usr/bin/python3
"""End-to-end tests of files changed since the dump: the changed workload
(run from a copy of its executable) holds a data file read-write at offset
100, a directory, a copy of a shared library mapped executable, and a log open
for appending only. Between dump and restore the test changes one file in
each way (append, truncate, mtime only, replaced by another inode, content of
the mapped library copy or of the executable copy with size and mtime put
back): the restore is refused, naming the file and the change, with nothing
left behind; --allow-changed PATH or --ignore-changed-files go on. A missing
file is refused whatever the options. The log, only appended to, may grow.

Run: test_changed.py --cryo PATH --workloads DIR [NAME ...]
"""
import glob
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402

M64 = (1 << 64) - 1


def wl_pat(seed, i):
    """wl_common.h's wl_pat."""
    z = (seed * 0x9E3779B97F4A7C15 + i + 0x632BE59BD9B4E019) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def pattern(nbytes, seed):
    return b"".join(struct.pack("<Q", wl_pat(seed, i)) for i in range(nbytes // 8))


def a_library():
    """A real shared library to copy (never touched itself)."""
    for pat in ("/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libm.so.6",
                "/usr/lib/x86_64-linux-gnu/libz.so.1"):
        for p in glob.glob(pat):
            return os.path.realpath(p)
    cryotest.fail("no shared library to copy (libz.so.1 or libm.so.6)")


def start(h):
    """The workload from a copy of its executable, with its files in its
    control directory: (workload, paths by name)."""
    exe = os.path.join(h.mkdir("exe"), "changed")
    shutil.copy2(h.workload_path("changed"), exe)
    ctl = os.path.realpath(h.mkdir("changed"))
    paths = {"exe": exe, "data": os.path.join(ctl, "data"), "lib": os.path.join(ctl, "lib.so"),
             "dir": os.path.join(ctl, "dir"), "log": os.path.join(ctl, "log")}
    with open(paths["data"], "wb") as f:
        f.write(pattern(4096, 1))
    shutil.copy2(a_library(), paths["lib"])
    os.mkdir(paths["dir"])
    w = h.start("changed", [exe, ctl], ctl)
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    return w, paths


def dump_kill(h, w):
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    return images


def running_from(exe):
    """Pids of processes whose executable is `exe`."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == exe:
                    out.append(int(d))
            except OSError:
                pass
    return out


def restore_refused(h, w, paths, images, parts, extra=()):
    r = h.restore(images, expect_ok=False, extra=extra)
    check(r.rc != 0, "restore succeeded although %s" % parts[0])
    for part in parts:
        check(part in r.message, "the refusal should name %r: %s" % (part, r.message))
    check(not cryotest.pid_alive(w.pid), "pid %d is alive after the refused restore" % w.pid)
    check_eq(running_from(paths["exe"]), [], "processes left running from %s" % paths["exe"])
    return r


def restore_verify_exit(h, w, images, when, extra=()):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=extra)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid])
    return r


class Kept:
    """A file's bytes and times, to put back exactly (same inode)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        st = os.stat(path)
        self.times = (st.st_atime_ns, st.st_mtime_ns)

    def put_back(self):
        with open(self.path, "r+b") as f:
            f.write(self.data)
            f.truncate(len(self.data))
        os.utime(self.path, ns=self.times)


def flip_tail(path, keep_times=True):
    """Changes the last 16 bytes of `path`, keeping its size and mtime."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(st.st_size - 16)
        old = f.read(16)
        f.seek(st.st_size - 16)
        f.write(bytes(b ^ 0xff for b in old))
    if keep_times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_changed_unchanged_and_shown(h):
    """Nothing changed: the restore goes on, in kill mode and again (rewind);
    cryo show lists the files with what it will compare."""
    w, paths = start(h)
    images = dump_kill(h, w)
    shown = {f["path"]: f for f in h.show_json(images)["referenced_files"]}
    for name in ("exe", "lib", "data", "dir"):
        check(paths[name] in shown, "cryo show lists no %s (%s): %s" % (name, paths[name], sorted(shown)))
    for name in ("exe", "lib"):
        check("xxh3" in shown[paths[name]], "no content hash recorded for %s: %s" % (name, shown[paths[name]]))
    check_eq(shown[paths["data"]]["size"], 4096, "recorded size of data")
    check_eq(shown[paths["data"]]["check"], "content", "how data is compared")
    check_eq(shown[paths["dir"]]["check"], "identity", "how the directory is compared")
    check_eq(shown[paths["log"]]["check"], "identity", "how the append-only log is compared")
    check("xxh3" not in shown[paths["data"]], "a content hash for data, which is not executable")
    text = h.run_cryo(["show", images], log=False, tag="show").stdout
    check("files checked at restore" in text and paths["lib"] in text, "cryo show text lists no checked files:\n" + text)
    for i in range(2):
        restore_verify_exit(h, w, images, "after restore %d" % (i + 1))


def test_changed_refused_each_way(h):
    """Each kind of change refuses the restore by name, leaving nothing; the
    same image restores once the file is put back."""
    w, paths = start(h)
    images = dump_kill(h, w)
    data, lib, exe = Kept(paths["data"]), Kept(paths["lib"]), Kept(paths["exe"])

    with open(paths["data"], "ab") as f:
        f.write(b"appended")
    restore_refused(h, w, paths, images, [paths["data"], "size 4096 -> 4104 bytes", "--allow-changed " + paths["data"],
                                          "--ignore-changed-files"])
    data.put_back()

    os.truncate(paths["data"], 1000)
    restore_refused(h, w, paths, images, [paths["data"], "size 4096 -> 1000 bytes"])
    data.put_back()

    os.utime(paths["data"], ns=(data.times[0], data.times[1] + 1000))
    restore_refused(h, w, paths, images, [paths["data"], "mtime "])
    data.put_back()

    flip_tail(paths["lib"])
    restore_refused(h, w, paths, images, [paths["lib"], "mapped by pid %d" % w.pid, "content differs (XXH3-64"])
    lib.put_back()

    flip_tail(paths["exe"])
    restore_refused(h, w, paths, images, [paths["exe"], "executable of pid %d" % w.pid, "content differs"])
    exe.put_back()

    # Put back exactly: the image restores.
    restore_verify_exit(h, w, images, "after the files were put back")

    # Replaced by a copy (same bytes, same mtime, another inode).
    shutil.copy2(paths["data"], paths["data"] + ".new")
    os.rename(paths["data"] + ".new", paths["data"])
    restore_refused(h, w, paths, images, [paths["data"], "replaced: another file (inode"])
    restore_verify_exit(h, w, images, "with --allow-changed of the replaced file", extra=["--allow-changed", paths["data"]])


def test_changed_allowed(h):
    """--allow-changed PATH lets that file differ (and only that one);
    --ignore-changed-files lets every file differ. The restored process goes
    on with the files as they are now, with a warning naming each."""
    w, paths = start(h)
    images = dump_kill(h, w)
    with open(paths["data"], "ab") as f:
        f.write(b"the program's own write")
    flip_tail(paths["lib"], keep_times=False)
    r = restore_refused(h, w, paths, images, [paths["lib"], "mtime "], extra=["--allow-changed", paths["data"]])
    refusal = r.message.split(" failed: ", 1)[-1]  # past the warning about the allowed file
    check(paths["data"] + " (" not in refusal, "an allowed file is named as refused: %s" % r.message)
    check(paths["data"] in r.message and "--allow-changed says" in r.message,
          "no warning names the allowed file: %s" % r.message)
    r = restore_verify_exit(h, w, images, "with --allow-changed for both",
                            extra=["--allow-changed", paths["data"], "--allow-changed", paths["lib"]])
    r = restore_verify_exit(h, w, images, "with --ignore-changed-files", extra=["--ignore-changed-files"])
    check(paths["data"] in r.result.stderr and "--ignore-changed-files" in r.result.stderr,
          "no warning names the changed file: %s" % r.result.stderr)


def test_changed_missing(h):
    """A missing file is refused whatever the options; put back, the image
    restores."""
    w, paths = start(h)
    images = dump_kill(h, w)
    os.rename(paths["data"], paths["data"] + ".away")
    restore_refused(h, w, paths, images, [paths["data"], "is missing (No such file or directory)", "put it back"],
                    extra=["--ignore-changed-files"])
    os.rename(paths["data"] + ".away", paths["data"])
    restore_verify_exit(h, w, images, "after the file was put back")


def test_changed_leave_running(h):
    """After a leave-running dump the original goes on: its appends to the log
    (open O_WRONLY|O_APPEND) do not refuse the restore; a write to its data
    file does, until allowed."""
    w, paths = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")  # appends to the log
    size = os.path.getsize(paths["log"])
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([w.pid])
    check(os.path.getsize(paths["log"]) > size, "the original did not append to its log")
    restore_verify_exit(h, w, images, "after the original appended to its log")
    with open(paths["data"], "r+b") as f:
        f.seek(2000)
        f.write(b"the original's write after the dump")
    restore_refused(h, w, paths, images, [paths["data"], "mtime "])
    restore_verify_exit(h, w, images, "with --allow-changed of the data", extra=["--allow-changed", paths["data"]])


TESTS = [
    test_changed_unchanged_and_shown,
    test_changed_refused_each_way,
    test_changed_allowed,
    test_changed_missing,
    test_changed_leave_running,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
