#!/usr/bin/python3
"""Makes a golden image: a freestanding program (ticker: one process;
pipetree: a parent, a child fed through a pipe, a zombie; shantree: a parent
and a child sharing shared anonymous memory), checkpointed by the cryo given.

Usage: make_golden.py CRYO OUTDIR [PROGRAM]

Golden images are kept under tests/golden/ and restored by every later cryo
(tests/e2e/test_golden.py): images made by an older cryo must keep restoring.
The ticker runs from /tmp/cryo-golden with pid 32100 and a fixed mtime, so the
image depends on nothing but this kernel's vDSO layout and the CPU's xsave size.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = "/tmp/cryo-golden"
PID = 32100
MTIME = 1767225600  # 2026-01-01T00:00:00Z
PROGRAMS = ("ticker", "pipetree", "shantree")


def setup():
    os.makedirs(DIR, exist_ok=True)
    for prog in PROGRAMS:
        shutil.copy(os.path.join(HERE, prog), DIR + "/" + prog)
        os.chmod(DIR + "/" + prog, 0o755)
        os.utime(DIR + "/" + prog, (MTIME, MTIME))
    open(DIR + "/out", "w").close()


def start_with_pid(pid, prog="ticker"):
    """Start `prog` as `pid` (ns_last_pid), retrying if another fork wins."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen([DIR + "/" + prog], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=DIR, close_fds=True, start_new_session=True)
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    sys.exit("could not start %s as pid %d" % (prog, pid))


def main():
    cryo, out = sys.argv[1], sys.argv[2]
    prog = sys.argv[3] if len(sys.argv) > 3 else "ticker"
    setup()
    p = start_with_pid(PID, prog)
    time.sleep(0.5)
    subprocess.run([cryo, "dump", "-t", str(p.pid), "-D", out], check=True)
    p.wait()
    print("golden image of pid %d in %s" % (PID, out))


if __name__ == "__main__":
    main()
