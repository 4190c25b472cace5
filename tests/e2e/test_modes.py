#!/usr/bin/python3
"""End-to-end tests of how open files are made again (issue 8, part "paths"):
each program records what it observes of its own files before the dump and
checks, after each restore (kill mode, then rewind; leave-running), that it
observes the same:
  - memfds: exec(2) of a memfd through memfd_create's own read-write fd, of
    one whose only description left is read-only, and of one mapped shared
    and writable, works; a memfd also reopened for writing stays busy
    (ETXTBSY), as in the original;
  - private file mappings keep the access mode of the file they were made
    from (the mode of /proc/PID/map_files entries; a file mapped from a
    read-write description stays busy for exec);
  - a pty slave keeps the owner, group, mode and times the program gave it.

Run: test_modes.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from test_paths import start_holder  # noqa: E402

# Helpers every program below starts with.
COMMON = r"""
import mmap, shutil
SH = open("/bin/sh", "rb").read()
def try_exec(target):
    # 7 if exec works, 100 + errno if not (126: ETXTBSY).
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(target, ["sh", "-c", "exit 7"], {})
        except OSError as e:
            os._exit(100 + e.errno)
        os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
def accmode(fd):
    for line in open("/proc/self/fdinfo/%d" % fd):
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & 3
def map_entry_mode(path):
    for line in open("/proc/self/maps"):
        if line.rstrip("\n").endswith(path):
            return oct(os.lstat("/proc/self/map_files/" + line.split()[0]).st_mode & 0o777)
    return None
"""


def run_modes(h, name, setup, observe, leave_running=False):
    """Starts a program that runs `setup`, then `observe` (an expression)
    before the dump and on each verify; checks both agree after restores."""
    w = start_holder(h, name, COMMON + setup + "\nfirst = " + observe + "\n",
                     "now = " + observe + "\n"
                     "res = ('OK ' if now == first else 'FAIL ') + repr(now) + ' (before the dump: ' + repr(first) + ')'")
    line = h.verify_ok(w, when="before the dump")
    h.note("%s: %s" % (name, line))
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=leave_running)
    if leave_running:
        h.verify_ok(w, when="of the original after dump --leave-running")
        h.cleanup_one(w.pid)
    else:
        h.reap_original(w)
    for i in range(1 if leave_running else 2):  # kill mode, then rewind
        r = h.restore(images, detach=True, expected_pid=w.pid)
        h.verify_ok(w.restored(r.pid), when="after restore %d" % (i + 1))
        h.cleanup_one(r.pid)
        cryotest.wait_pids_gone([r.pid])
    return images


MEMFDS = r"""
own = os.memfd_create("own", 0)          # memfd_create's own read-write description
os.write(own, SH)
src = os.memfd_create("ro", 0)
os.write(src, SH)
ro = os.open("/proc/self/fd/%d" % src, os.O_RDONLY)  # only a read-only description left
os.close(src)
busy_own = os.memfd_create("busy", 0)
os.write(busy_own, SH)
busy = os.open("/proc/self/fd/%d" % busy_own, os.O_RDWR)  # reopened for writing: counts as a writer
src = os.memfd_create("mapped", 0)
os.write(src, SH)
mapped = mmap.mmap(src, 4096, mmap.MAP_SHARED)  # shared, writable, from memfd_create's description
mapped_ro = os.open("/proc/self/fd/%d" % src, os.O_RDONLY)
os.close(src)
"""
MEMFDS_OBSERVE = ("[try_exec(own), try_exec(ro), try_exec(busy_own), try_exec(mapped_ro), "
                  "accmode(own), accmode(ro), accmode(busy), accmode(mapped_ro), map_entry_mode('/memfd:mapped (deleted)')]")


def test_memfd_exec(h):
    images = run_modes(h, "memfdexec", MEMFDS, MEMFDS_OBSERVE)
    check_features(h, images, ["memfd", "memfd-writers"])


def test_memfd_exec_leave_running(h):
    run_modes(h, "memfdexeclr", MEMFDS, MEMFDS_OBSERVE, leave_running=True)


MAPPINGS = r"""
for name in ("rwcopy", "rocopy"):
    shutil.copy("/bin/sh", name)
fd = os.open("rwcopy", os.O_RDWR)
rw_map = mmap.mmap(fd, 4096, mmap.MAP_PRIVATE, mmap.PROT_READ)
os.close(fd)
fd = os.open("rocopy", os.O_RDONLY)
ro_map = mmap.mmap(fd, 4096, mmap.MAP_PRIVATE, mmap.PROT_READ)
os.close(fd)
RW, RO = os.path.abspath("rwcopy"), os.path.abspath("rocopy")
"""
MAPPINGS_OBSERVE = "[map_entry_mode(RW), map_entry_mode(RO), try_exec(RW), try_exec(RO)]"


def test_private_mapping_open_mode(h):
    images = run_modes(h, "mapmode", MAPPINGS, MAPPINGS_OBSERVE)
    check_features(h, images, ["file-open-mode"])


PTY = r"""
master, slave = os.openpty()
os.fchown(slave, 1234, 5678)
os.fchmod(slave, 0o600)
os.utime(slave, ns=(1000000000123456789, 1100000000987654321))
"""
PTY_OBSERVE = ("(lambda st: [st.st_uid, st.st_gid, oct(st.st_mode & 0o7777), st.st_atime_ns, st.st_mtime_ns])"
               "(os.fstat(slave))")


def test_pty_slave_owner(h):
    images = run_modes(h, "ptyowner", PTY, PTY_OBSERVE)
    check_features(h, images, ["tty", "pty-owner"])


def check_features(h, images, names):
    features = h.show_json(images)["features"]
    for n in names:
        cryotest.check(n in features, "image features lack %s: %r" % (n, features))


TESTS = [
    test_memfd_exec,
    test_memfd_exec_leave_running,
    test_private_mapping_open_mode,
    test_pty_slave_owner,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
