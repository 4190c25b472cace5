#!/usr/bin/env python3
"""leftovers.py names a SysV segment made after its snapshot, and is quiet
once it is removed. Runs itself again in an IPC namespace of its own
(unshare --ipc), so the segment never exists on the machine."""
import ctypes
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0


def inner():
    libc = ctypes.CDLL(None, use_errno=True)
    tool = [sys.executable, os.path.join(HERE, "leftovers.py")]
    with tempfile.NamedTemporaryFile() as snap:
        subprocess.run(tool + ["snapshot", snap.name], check=True, timeout=60)
        shmid = libc.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
        if shmid < 0:
            print("FAIL shmget: errno %d" % ctypes.get_errno())
            return 1
        try:
            p = subprocess.run(tool + ["compare", snap.name], capture_output=True, text=True, timeout=60)
            if p.returncode != 1 or ("SysV shm key 0 id %d" % shmid) not in p.stderr:
                print("FAIL a segment made after the snapshot: rc %d, %r" % (p.returncode, p.stderr))
                return 1
        finally:
            libc.shmctl(shmid, IPC_RMID, None)
        p = subprocess.run(tool + ["compare", snap.name], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            print("FAIL after removing the segment: rc %d, %r" % (p.returncode, p.stderr))
            return 1
    print("PASS leftovers names a new SysV segment and nothing once it is gone")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--inner"]:
        sys.exit(inner())
    sys.exit(subprocess.run(["unshare", "--ipc", sys.executable, os.path.abspath(__file__), "--inner"],
                            timeout=120).returncode)
