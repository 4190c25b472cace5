#!/usr/bin/python3
"""End-to-end tests of shared memory: memfds (mapped, held as fds with their
offsets, sealed, privately mapped with copied pages), POSIX shared memory in
/dev/shm (also unlinked while mapped) and SysV segments (fixed address,
SHM_RDONLY attach, marked IPC_RMID while attached), shared by a parent and its
child. The shm workload verifies all of it itself, including that a write by
one process is seen by the other. The shanon workload holds shared anonymous
memory (and a memfd, a SysV segment) whose pages only the object holds (written by processes that exited
before the dump; a region partly unmapped, moved and split), and checks that
they come back, holes stay holes and the sharing is still shared.

Run: test_shm.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402


def read_objects(w):
    """The objects the workload made: {'posix': [paths], 'sysv': [(id, key)]
    (segments that outlive it), 'removed': [ids], 'child': pid}."""
    out = {"posix": [], "sysv": [], "removed": [], "child": None}
    for line in (cryotest.read_text(w.path("objects")) or "").splitlines():
        k, _, v = line.partition(" ")
        if k == "posix":
            out["posix"].append(v)
        elif k == "sysv":
            shmid, key = v.split()
            out["sysv"].append((int(shmid), int(key)))
        elif k == "removed":
            out["removed"].append(int(v))
        elif k == "child":
            out["child"] = int(v)
    check(out["child"], "%s: no objects file" % w.name)
    return out


def sysv_segments():
    """shmid -> (key, nattch, mode) from /proc/sysvipc/shm."""
    segs = {}
    for line in (cryotest.read_text("/proc/sysvipc/shm") or "").splitlines()[1:]:
        f = line.split()
        segs[int(f[1])] = (int(f[0]), int(f[6]), int(f[2], 8))
    return segs


class ShmObjects:
    """Removes what the workload leaves behind (SysV segments outlive their
    processes, /dev/shm files too), whatever the test's outcome."""

    def __init__(self):
        self.objects = []

    def add(self, objs):
        self.objects.append(objs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        segs = sysv_segments()
        for objs in self.objects:
            for shmid, key in objs["sysv"]:
                # Only the workload's own segment: same id and key.
                if shmid in segs and segs[shmid][0] == key:
                    subprocess.run(["ipcrm", "-m", str(shmid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=10)
            for path in objs["posix"]:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return False




def start_shm(h, objects, mode=None):
    w = h.start_workload("shm", *([mode] if mode else []))
    h.wait_ready(w, timeout=30)
    objs = read_objects(w)
    objects.add(objs)
    return w, objs


def check_image(h, images, objs):
    shown = h.show_json(images)
    feats = shown["features"]
    for f in ("memfd", "posix-shm", "sysv-shm", "tree"):
        check(f in feats, "image features %s lack %r" % (feats, f))
    kinds = sorted((o["kind"], o["name"]) for o in shown["shm_objects"] if o["kind"] != "sysv")
    pid = shown["root_pid"]
    check_eq(kinds, [("memfd", "cryo test memfd"), ("memfd", "sealed (deleted)"), ("memfd", "write-sealed"),
                     ("posix", "/dev/shm/cryo-shm-%d" % pid), ("posix", "/dev/shm/cryo-shm-unl-%d" % pid)],
             "memfd and POSIX objects in the image")
    sysv = sorted((o["sysv_id"], o["sysv_removed"]) for o in shown["shm_objects"] if o["kind"] == "sysv")
    check_eq(sysv, sorted([(objs["sysv"][0][0], False), (objs["removed"][0], True)]), "SysV objects in the image")
    # One object per memfd/file/segment, however many processes hold it.
    check_eq(len(shown["shm_objects"]), 7, "objects in the image")
    check(os.path.isfile(os.path.join(images, "shm.img")), "no shm.img in the image")
    check(os.path.isfile(os.path.join(images, "shm-pages.img")), "no shm-pages.img in the image")


def restore_verify_exit(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, when=when + " (again)")
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def test_shm_kill(h):
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects)
        h.verify_ok(w, when="before dump")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        check_image(h, images, objs)
        # Killed: S1 stays (the restore reuses it), S2 (removed) went with its users.
        segs = sysv_segments()
        s1, s2 = objs["sysv"][0][0], objs["removed"][0]
        check(s1 in segs and segs[s1][1] == 0, "S1 %d after the kill: %r" % (s1, segs.get(s1)))
        check(s2 not in segs, "removed S2 %d still exists after its users died: %r" % (s2, segs.get(s2)))
        restore_verify_exit(h, w, images, "after restore")


def test_shm_leave_running(h):
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        h.verify_ok(w, when="of the original after dump --leave-running")
        # The original changes every object as it exits; the restore puts the
        # dumped content back.
        h.verify_ok(w, exit=True, when="of the original (exit)")
        check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        restore_verify_exit(h, w, images, "after restore")


def test_shm_rewind(h):
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        for i in range(2):
            # Each instance scribbles over every object before it exits.
            restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
            cryotest.wait_pids_gone([w.pid, objs["child"]])


def test_shm_sysv_id_in_use(h):
    """Restoring while the original still holds its SysV segment is refused,
    naming the id, and changes nothing."""
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        before = sysv_segments()
        shm_before = set(os.listdir("/dev/shm"))
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0, "restore beside the running original succeeded")
        s1, s2 = objs["sysv"][0][0], objs["removed"][0]
        check(any("SysV shared memory segment id %d" % i in r.message for i in (s1, s2))
              and "in use" in r.message,
              "error should name SysV segment id %d or %d in use: %s" % (s1, s2, r.message))
        left = sorted(n for n in set(os.listdir("/dev/shm")) - shm_before if n.startswith(".cryo-restore"))
        check(not left, "the refused restore left files in /dev/shm: %s" % left)
        check_eq(sysv_segments(), before, "SysV segments after the refused restore")
        h.verify_ok(w, when="of the original after the refused restore")
        h.verify_ok(w, exit=True, when="of the original (exit)")
        check_eq(h.wait_exit(w), ("exit", 0), "original exit status")


def test_shm_failed_restore_leaves_nothing(h):
    """A restore that fails after the shared memory was made (here: the
    executable is gone) removes the segments and files it created and leaves
    the path of the POSIX object alone; the image still restores afterwards."""
    with ShmObjects() as objects:
        exe_dir = h.mkdir("exe")
        exe = os.path.join(exe_dir, "shm")
        shutil.copy2(h.workload_path("shm"), exe)
        ctl = h.mkdir("shm")
        w = h.start("shm", [exe, ctl], ctl)
        h.wait_ready(w, timeout=30)
        objs = read_objects(w)
        objects.add(objs)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        before = sysv_segments()
        posix = objs["posix"][0]
        ino = os.stat(posix).st_ino
        os.rename(exe, exe + ".away")  # same inode and mtime when it comes back
        shm_before = set(os.listdir("/dev/shm"))
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0, "restore without the executable succeeded")
        check(exe in r.message, "the error should name the executable %s: %s" % (exe, r.message))
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        after = sysv_segments()
        check(objs["removed"][0] not in after, "the removed segment %d made by the failed restore is still there: %r"
              % (objs["removed"][0], after.get(objs["removed"][0])))
        check_eq(after, before, "SysV segments after the failed restore")
        left = sorted(n for n in set(os.listdir("/dev/shm")) - shm_before if n.startswith(".cryo-restore"))
        check(not left, "the failed restore left files in /dev/shm: %s" % left)
        check_eq(os.stat(posix).st_ino, ino, "inode of %s after the failed restore" % posix)
        os.rename(exe + ".away", exe)
        restore_verify_exit(h, w, images, "after restoring again")


def refused(h, mode, must_name, hold_outside=None):
    """A dump of the shm workload (in `mode`) is refused before anything is
    written, naming the workload's pid and `must_name`; it runs on untouched.
    `hold_outside(w, objs)`: a context manager that makes this test process
    hold one of its objects during the dump (it yields what to name)."""
    import contextlib
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects, mode)
        with (hold_outside(w, objs) if hold_outside else contextlib.nullcontext([])) as names:
            before = sysv_segments()
            h.dump_refused(w.pid, ["pid %d" % w.pid] + must_name + names)
            check_eq(sysv_segments(), before, "SysV segments after the refused dump")
        st = proc_stat(w.pid)
        check(st is not None and st["state"] in ("S", "R"), "workload disturbed by the refused dump: %r" % (st,))
        h.verify_ok(w, when="after the refused dump")
        h.verify_ok(w, exit=True, when="(exit)")
        check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def holding(open_it, close_it):
    import contextlib

    @contextlib.contextmanager
    def hold(w, objs):
        held, names = open_it(w, objs)
        try:
            yield names
        finally:
            close_it(held)
    return hold


def map_posix_shm(w, objs):
    """Maps the workload's POSIX shm object here, with no fd left open
    (Python's mmap would keep one: ctypes)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(objs["posix"][0], os.O_RDWR)
    try:
        at = libc.mmap(None, 4096, 3, 1, fd, 0)  # PROT_READ|PROT_WRITE, MAP_SHARED
    finally:
        os.close(fd)
    check(at not in (None, ctypes.c_void_p(-1).value), "mmap: errno %d" % ctypes.get_errno())
    unmap = lambda: libc.munmap(ctypes.c_void_p(at), ctypes.c_size_t(4096))  # noqa: E731
    return unmap, ["POSIX shared memory", "mapped (VMA", "by pid %d" % os.getpid(), "outside the dumped tree"]


def attach_sysv(w, objs):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    shmid = objs["sysv"][0][0]
    at = libc.shmat(shmid, None, 0o10000)  # SHM_RDONLY
    check(at not in (None, ctypes.c_void_p(-1).value), "shmat %d: errno %d" % (shmid, ctypes.get_errno()))
    return (libc, at), ["SysV shared memory", "by pid %d" % os.getpid(), "outside the dumped tree"]


def hold_memfd(w, objs):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fds = cryotest.proc_fds(w.pid)
    fd = [n for n, info in fds.items() if info["path"].startswith("/memfd:cryo test memfd")][0]
    pidfd = os.pidfd_open(w.pid)
    held = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    os.close(pidfd)
    check(held >= 0, "pidfd_getfd: errno %d" % ctypes.get_errno())
    return held, ["memfd", "held (fd %d) by pid %d" % (held, os.getpid()), "outside the dumped tree"]


def test_shm_hugetlb_memfd_fd(h):
    """A hugetlb memfd (MFD_HUGETLB, empty) held as fd 42 beside everything
    else (refused before shared hugetlb memory was restored, test_hugetlb.py
    has the rest): restored as a hugetlb memfd of the same name."""
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects, "hugetlb")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        h.check_feature(images, "hugetlb-shared")
        r = h.restore(images, detach=True, expected_pid=w.pid)
        fd = "/proc/%d/fd/42" % r.pid
        check_eq(os.readlink(fd), "/memfd:huge (deleted)", "fd 42 of the restored tree")
        # hugetlbfs gives its files the huge page size as their block size.
        check_eq(os.stat(fd).st_blksize, 2 << 20, "block size of fd 42 (hugetlbfs: the huge page size)")
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="after restore")
        check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_refuse_partial_sysv_attach(h):
    refused(h, "partial-sysv", ["VMA", "part of an attach of SysV segment"])


def test_segment_of_an_earlier_process_with_the_same_pid(h):
    """A segment outlives its creator, and the kernel gives the creator's pid
    to later processes: a tree process that got the pid after the segment was
    made did not make it, and the dump says nothing of it (it used to warn
    that the tree made a segment it does not attach)."""
    import ctypes
    r, wfd = os.pipe()
    creator = os.fork()
    if creator == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        os.write(wfd, str(libc.shmget(0, 4096, 0o1000 | 0o600)).encode())  # IPC_PRIVATE, IPC_CREAT
        os._exit(0)
    os.close(wfd)
    shmid = int(os.read(r, 32) or b"-1")
    os.close(r)
    os.waitpid(creator, 0)
    check(shmid >= 0, "shmget in the creator failed")
    try:
        check_eq(sysv_segments()[shmid][0], 0, "key of the creator's segment")
        # Rounded down to the second, a segment made within the second before
        # a process started may be its own: start the workload later.
        time.sleep(2.1)
        w = None
        for _ in range(50):
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(creator - 1))
            w = h.start_workload("counter")
            if w.pid == creator:
                break
            h.kill_and_reap(w)
            w = None
        check(w is not None, "no workload got the creator's pid %d (the machine forks too much)" % creator)
        h.wait_ready(w)
        images = h.mkdir("img")
        d = h.dump(w.pid, images, leave_running=True)
        check("SysV segment id %d" % shmid not in d.stderr, "the dump named the segment of the earlier process "
              "%d as the tree's:\n%s" % (creator, d.stderr))
        h.verify_ok(w, when="after the dump")
    finally:
        subprocess.run(["ipcrm", "-m", str(shmid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)


def test_shm_own_ipc_namespace(h):
    """A tree in its own IPC namespace (refused before cryo restored such
    namespaces): its segments are made again in a fresh one, with their ids;
    nothing of them shows in the host's (test_ipcns.py has the rest)."""
    with ShmObjects() as objects:
        w, objs = start_shm(h, objects, "ipc-ns")
        before = sysv_segments()
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone([w.pid, objs["child"]])
        r = h.restore(images, detach=True, expected_pid=w.pid)
        check(os.readlink("/proc/%d/ns/ipc" % r.pid) != os.readlink("/proc/self/ns/ipc"),
              "the restored tree is in the host's IPC namespace")
        check_eq(sysv_segments(), before, "the host's SysV segments after the restore")
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="after restore")
        check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_refuse_posix_shm_mapped_outside(h):
    """POSIX shared memory also mapped by a process outside the tree: a
    restored tree would have an object of its own; refused by name."""
    refused(h, None, [], holding(map_posix_shm, lambda unmap: unmap()))


def test_refuse_sysv_attached_outside(h):
    """A SysV segment also attached outside the tree: the restore could not
    make it again (its id busy) and would no longer share it; refused."""
    refused(h, None, [], holding(attach_sysv, lambda held: held[0].shmdt(ctypes_ptr(held[1]))))


def ctypes_ptr(addr):
    import ctypes
    return ctypes.c_void_p(addr)


def test_refuse_memfd_held_outside(h):
    """A memfd also held as an fd outside the tree is refused by name."""
    refused(h, None, [], holding(hold_memfd, os.close))


# -- shared anonymous memory whose pages only the object holds (shanon)

def start_shanon(h):
    w = h.start_workload("shanon")
    h.wait_ready(w, timeout=30)
    layout = h.read_layout(w)
    return w, int(layout["child"])


def check_shanon_image(h, images):
    shown = h.show_json(images)
    anon = sorted((o["size"], o["pages"]) for o in shown["shm_objects"] if o["kind"] == "anon")
    # M, R2 and R1, each once although the parent and the child map them, with
    # the pages they hold (R2's page 2 too, though nobody maps it any more),
    # holes left out.
    check_eq(anon, [(4096, 1), (32 * 4096, 5), (64 * 4096, 4)], "shared anonymous objects (size, pages) in the image")
    # R3 and R4: a memfd and a SysV segment with a page each only the object holds.
    others = sorted((o["kind"], o["size"], o["pages"]) for o in shown["shm_objects"] if o["kind"] != "anon")
    check_eq(others, [("memfd", 8 * 4096, 2), ("sysv", 8 * 4096, 2)], "memfd and SysV objects (size, pages)")
    check("anon-shmem" in shown["features"], "image features %s lack 'anon-shmem'" % shown["features"])


def test_shanon_kill(h):
    w, child = start_shanon(h)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    check_shanon_image(h, images)
    restore_verify_exit(h, w, images, "after restore")


def test_shanon_leave_running(h):
    w, child = start_shanon(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone([w.pid, child])
    restore_verify_exit(h, w, images, "after restore")


def test_shanon_rewind(h):
    w, child = start_shanon(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid, child])
    for i in range(2):
        # Each instance overwrites every page before it exits: the next one
        # gets its own object with the image's bytes.
        restore_verify_exit(h, w, images, "of rewind instance %d" % (i + 1))
        cryotest.wait_pids_gone([w.pid, child])


TESTS = [
    test_shm_kill,
    test_shm_leave_running,
    test_shm_rewind,
    test_shm_sysv_id_in_use,
    test_shm_failed_restore_leaves_nothing,
    test_shm_hugetlb_memfd_fd,
    test_refuse_partial_sysv_attach,
    test_shm_own_ipc_namespace,
    test_segment_of_an_earlier_process_with_the_same_pid,
    test_refuse_posix_shm_mapped_outside,
    test_refuse_sysv_attached_outside,
    test_refuse_memfd_held_outside,
    test_shanon_kill,
    test_shanon_leave_running,
    test_shanon_rewind,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
