#!/usr/bin/python3
"""mntns.py: a tree that owns its mount namespace, checked by itself.

Usage: unshare --mount --fork -- /usr/bin/python3 mntns.py CTL_DIR BASE [--refuse KIND]

BASE is a directory of the host holding the mount points t/ and ro/ and a
directory src/ with a file "hello". In its own mount namespace the workload
mounts a tmpfs on BASE/t (size=4m, mode=0711, nr_inodes=1000; made shared:
a peer group of its own) holding: d/ (0750), d/a.txt (owner 1234:4321, mtime
fixed), a sparse file "holes" (1 MiB hole, then data), a symlink "link" ->
d/a.txt, "open" held open at offset 1234 and "mapped" mapped MAP_SHARED and
written through the mapping, a file under two names
"linked" and "d/linked2" (hard links) held open through the first and
mapped MAP_SHARED through the second; a bind mount of BASE/src on BASE/ro, then
remounted read-only; a bind of t/d on t/again (a mount inside the tmpfs);
and its working directory is BASE/t/d.

On "check" it reads it all back: its mounts from /proc/self/mountinfo (type,
options, propagation), the files' content, modes, owners, times and holes,
the open file's offset, the mapping (still shared with the file), the hard
links (one inode, two links, a write through one name or the fd or the
mapping seen through all), the
read-only bind (EROFS on write), the cwd. On "write" (after a dump with
--leave-running) it changes the tmpfs (a new file, more in a.txt, new
bytes in the mapping) and from then on expects that; a copy restored from
the image still expects what it had at the dump, so a rewind must find the
tmpfs as it was then.

--refuse KIND adds a mount cryo does not make again: "ramfs" (a ramfs on
BASE/x) or "loop" (the ext4 image BASE/ext4.img on a loop device, on
BASE/x); --umount PATH unmounts one of the mounts it inherited (and checks
it stays unmounted).
Same control protocol as the other workloads (wl_common.h).
"""
import ctypes
import mmap
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop import poll_verify, write_atomic  # noqa: E402

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_SHARED = 1, 32, 4096, 1 << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

CTL, BASE = sys.argv[1], sys.argv[2]
ARGS = sys.argv[3:]
T, RO, SRC = os.path.join(BASE, "t"), os.path.join(BASE, "ro"), os.path.join(BASE, "src")
MTIME = 1700000000
A_TEXT = b"the first file of the tmpfs\n"
LINKED = b"one file, two names".ljust(4096, b".")
HELD_LINKS = []  # the fd of "linked", the shared mapping of "d/linked2"


def mount(src, target, fstype, flags, data=None):
    if libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                  data and data.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "mount %s on %s: %s" % (src, target, os.strerror(e)))


def mounts():
    """mount point -> (fstype, per-mount options, tags, super options)."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            w = line.split()
            dash = w.index("-")
            out[w[4]] = (w[dash + 1], w[5].split(","), w[6:dash], w[dash + 3].split(","))
    return out


def setup():
    mount("tmpfs", T, "tmpfs", 0, "size=4m,mode=0711,nr_inodes=1000")
    os.mkdir(os.path.join(T, "d"), 0o750)
    os.chmod(os.path.join(T, "d"), 0o750)
    a = os.path.join(T, "d", "a.txt")
    with open(a, "wb") as f:
        f.write(A_TEXT)
    os.chown(a, 1234, 4321)
    os.utime(a, (MTIME, MTIME))
    with open(os.path.join(T, "holes"), "wb") as f:
        f.seek(1 << 20)
        f.write(b"after the hole")
    os.symlink("d/a.txt", os.path.join(T, "link"))
    os.mkdir(os.path.join(T, "again"))
    with open(os.path.join(T, "open"), "wb") as f:
        f.write(bytes(range(256)) * 20)
    held = open(os.path.join(T, "open"), "rb")
    held.seek(1234)
    with open(os.path.join(T, "mapped"), "wb") as f:
        f.truncate(8192)
    mfd = os.open(os.path.join(T, "mapped"), os.O_RDWR)
    m = mmap.mmap(mfd, 8192, mmap.MAP_SHARED)
    m[0:16] = b"mapped:gen=00000"
    with open(os.path.join(T, "linked"), "wb") as f:
        f.write(LINKED)
    os.link(os.path.join(T, "linked"), os.path.join(T, "d", "linked2"))
    lfd = os.open(os.path.join(T, "linked"), os.O_RDWR)
    l2 = os.open(os.path.join(T, "d", "linked2"), os.O_RDWR)
    lm = mmap.mmap(l2, 4096, mmap.MAP_SHARED)
    os.close(l2)
    HELD_LINKS.extend([lfd, lm])
    mount(None, T, None, MS_SHARED)
    mount(SRC, RO, None, MS_BIND)
    mount(None, RO, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    mount(os.path.join(T, "d"), os.path.join(T, "again"), None, MS_BIND)
    if "--refuse" in ARGS:
        kind = ARGS[ARGS.index("--refuse") + 1]
        x = os.path.join(BASE, "x")
        if kind == "ramfs":
            mount("none", x, "ramfs", 0)
        elif kind == "loop":
            subprocess.run(["mount", "-o", "loop", os.path.join(BASE, "ext4.img"), x], check=True)
    if "--umount" in ARGS:
        target = ARGS[ARGS.index("--umount") + 1]
        if libc.umount2(target.encode(), 2) != 0:  # MNT_DETACH
            raise OSError(ctypes.get_errno(), "umount " + target)
    os.chdir(os.path.join(T, "d"))
    return held, mfd, m


def check_state(held, m, gen):
    bad = []

    def expect(cond, msg):
        if not cond:
            bad.append(msg)

    table = mounts()
    if "--umount" in ARGS:
        gone = ARGS[ARGS.index("--umount") + 1]
        expect(gone not in table, "%s, unmounted at the start, is mounted: %r" % (gone, table.get(gone)))
    t = table.get(T)
    expect(t is not None and t[0] == "tmpfs", "no tmpfs on %s: %r" % (T, t))
    if t:
        expect("size=4096k" in t[3] and "mode=711" in t[3] and "nr_inodes=1000" in t[3],
               "tmpfs options %r" % (t[3],))
        expect(any(x.startswith("shared:") for x in t[2]), "tmpfs propagation %r, not shared" % (t[2],))
    ro = table.get(RO)
    expect(ro is not None and "ro" in ro[1], "no read-only bind on %s: %r" % (RO, ro))
    again = table.get(os.path.join(T, "again"))
    expect(again is not None and again[0] == "tmpfs", "no bind on t/again: %r" % (again,))
    try:
        with open(os.path.join(RO, "hello")) as f:
            expect(f.read() == "hello from the host\n", "ro/hello content")
        try:
            open(os.path.join(RO, "new"), "w").close()
            bad.append("wrote in the read-only bind")
        except OSError as e:
            expect(e.errno == 30, "writing in the read-only bind: %s, not EROFS" % e)
        a = os.path.join(T, "d", "a.txt")
        want = A_TEXT + b"more\n" * gen
        with open(a, "rb") as f:
            expect(f.read() == want, "a.txt content")
        st = os.stat(a)
        expect((st.st_uid, st.st_gid) == (1234, 4321), "a.txt owner %d:%d" % (st.st_uid, st.st_gid))
        if gen == 0:
            expect(int(st.st_mtime) == MTIME, "a.txt mtime %s" % st.st_mtime)
        expect(os.stat(os.path.join(T, "d")).st_mode & 0o7777 == 0o750, "d/ mode")
        expect(os.stat(T).st_mode & 0o7777 == 0o711, "tmpfs root mode %o" % os.stat(T).st_mode)
        with open(os.path.join(T, "again", "a.txt"), "rb") as f:
            expect(f.read() == want, "again/a.txt (the bind of d) content")
        h = os.open(os.path.join(T, "holes"), os.O_RDONLY)
        try:
            expect(os.fstat(h).st_size == (1 << 20) + 14, "holes size")
            expect(os.lseek(h, 0, os.SEEK_DATA) == 1 << 20, "holes: data not after the hole")
            expect(os.pread(h, 14, 1 << 20) == b"after the hole", "holes content")
        finally:
            os.close(h)
        expect(os.readlink(os.path.join(T, "link")) == "d/a.txt", "link target")
        check_links(expect)
        expect(held.tell() == 1234, "held file offset %d" % held.tell())
        expect(held.read(4) == (bytes(range(256)) * 20)[1234:1238], "held file content")
        held.seek(1234)
        expect(m[0:16] == b"mapped:gen=%05d" % gen, "mapping %r" % m[0:16])
        with open(os.path.join(T, "mapped"), "rb") as f:
            expect(f.read(16) == m[0:16], "the mapping is not the file's")
        m[100:104] = b"ping"  # shared: the file sees it at once
        with open(os.path.join(T, "mapped"), "rb") as f:
            f.seek(100)
            expect(f.read(4) == b"ping", "a write through the mapping is not in the file")
        m[100:104] = b"\0\0\0\0"
        expect(os.path.exists(os.path.join(T, "after")) == (gen > 0), "t/after exists: %s" %
               os.path.exists(os.path.join(T, "after")))
        expect(os.getcwd() == os.path.join(T, "d"), "cwd %s" % os.getcwd())
    except OSError as e:
        bad.append(str(e))
    return bad


def check_links(expect):
    """"linked" and "d/linked2": one inode with two names, the held fd and
    the shared mapping on it; a write through any is read through all."""
    lfd, lm = HELD_LINKS
    one, two = os.path.join(T, "linked"), os.path.join(T, "d", "linked2")
    s1, s2, sf = os.stat(one), os.stat(two), os.fstat(lfd)
    expect(s1.st_ino == s2.st_ino == sf.st_ino and s1.st_dev == s2.st_dev == sf.st_dev,
           "linked, d/linked2 and the held fd are not one inode: %d %d %d" % (s1.st_ino, s2.st_ino, sf.st_ino))
    expect(s1.st_nlink == 2, "linked has %d links, not 2" % s1.st_nlink)

    def read(path, off, n):
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)

    expect(read(two, 0, len(LINKED)) == LINKED, "d/linked2 content")
    expect(os.pread(lfd, len(LINKED), 0) == LINKED, "content through the held fd of linked")
    expect(lm[:] == LINKED, "content through the mapping of d/linked2")
    with open(one, "r+b") as f:  # through one name ...
        f.seek(30)
        f.write(b"ping")
    expect(read(two, 30, 4) == b"ping", "a write through linked is not seen through d/linked2")
    expect(os.pread(lfd, 4, 30) == b"ping", "a write through linked is not seen through the held fd")
    expect(lm[30:34] == b"ping", "a write through linked is not seen through the mapping of d/linked2")
    lm[30:34] = b"pong"  # ... through the mapping of the other
    expect(read(one, 30, 4) == b"pong", "a write through the mapping of d/linked2 is not seen through linked")
    os.pwrite(lfd, LINKED[30:34], 30)  # ... and through the fd, back as it was
    expect(read(two, 30, 4) == LINKED[30:34] and lm[30:34] == LINKED[30:34],
           "a write through the held fd is not seen through d/linked2 or its mapping")


def write_more(m, gen):
    with open(os.path.join(T, "d", "a.txt"), "ab") as f:
        f.write(b"more\n")
    with open(os.path.join(T, "after"), "w") as f:
        f.write("written after the dump\n")
    m[0:16] = b"mapped:gen=%05d" % gen


def main():
    held, mfd, m = setup()
    gen = 0
    write_atomic(CTL, "ready", "%d\n" % os.getpid())
    checks = 0
    while True:
        req = poll_verify(CTL)
        if req is None:
            time.sleep(0.01)
            continue
        if req == "write":
            gen += 1
            write_more(m, gen)
            write_atomic(CTL, "result", "OK wrote gen %d\n" % gen)
            continue
        checks += 1
        bad = check_state(held, m, gen)
        if bad:
            write_atomic(CTL, "result", "FAIL " + "; ".join(bad) + "\n")
        else:
            write_atomic(CTL, "result", "OK mntns gen %d check %d\n" % (gen, checks))
        if req == "exit":
            return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
