#!/usr/bin/env python3
"""bench_userns: what a user namespace of the tree's own costs a dump and a
restore: the userns workload under `unshare --user --map-root-user --fork`
against the same under `unshare --fork` (no namespace), and the same two with
`--net --ipc --uts`, alternating in each round (unshare and the workload dumped together); and the
workload alone in a PID namespace of its own (`unshare --pid --fork --mount-proc`) against the same owned
by a user namespace of its own (`--user --map-root-user` too), both restored with --pidns new; a time
namespace of its own (`--time --monotonic 1000 --boottime 2000 --fork`) without and with the user namespace;
wall time of each cryo command (kill mode; restore -d), median of N rounds.
Run as root from the build tree: bench_userns.py [CRYO [USERNS] [ROUNDS]].
"""
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us

C = sys.argv[1] if len(sys.argv) > 1 else "src/cli/cryo"
W = sys.argv[2] if len(sys.argv) > 2 else "tests/workloads/userns"
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 7

KINDS = {
    "plain": ["unshare", "--fork", "--", "setsid", W],
    "userns": ["unshare", "--user", "--map-root-user", "--fork", "--", "setsid", W],
    # The same, each with a network, IPC and UTS namespace of its own.
    "net-ipc-uts": ["unshare", "--net", "--ipc", "--uts", "--fork", "--", "setsid", W],
    "userns+net-ipc-uts": ["unshare", "--user", "--map-root-user", "--net", "--ipc", "--uts", "--fork", "--", "setsid",
                           W],
    # The workload alone (pid 2 beside unshare's shell) in a PID namespace of
    # its own, without and with a user namespace owning it; restored with
    # --pidns new.
    "pidns": ["unshare", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", 'setsid "$@" & wait', "sh", W],
    "userns+pidns": ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--", "sh", "-c",
                     'setsid "$@" & wait', "sh", W],
    # A time namespace of its own (offsets 1000 s, 2000 s), without and with
    # a user namespace owning it (made by unshare's restore helper once it
    # joined the user namespace; the workload's helper enters it).
    "time": ["unshare", "--time", "--monotonic", "1000", "--boottime", "2000", "--fork", "--", "setsid", W],
    "userns+time": ["unshare", "--user", "--map-root-user", "--time", "--monotonic", "1000", "--boottime", "2000",
                    "--fork", "--", "setsid", W],
}
PIDNS = ("pidns", "userns+pidns")


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(c) for c in f.read().split()]


def reap_all():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                return
        except ChildProcessError:
            return


def kill_wait(pid):
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    for _ in range(500):
        reap_all()
        if not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.01)
    raise SystemExit("pid %d not gone" % pid)


def start(kind, d):
    ctl = d + "/ctl"
    os.makedirs(ctl)
    argv = list(KINDS[kind])
    argv.append(ctl)
    u = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(ctl + "/ready"):
        if time.monotonic() > deadline:
            raise SystemExit("%s did not get ready" % kind)
        time.sleep(0.01)
    if kind in PIDNS:  # the workload, below the namespace's pid 1
        return u.pid, children(children(u.pid)[0])[0]
    return u.pid, u.pid  # unshare and its child together


def timed(args):
    t = time.monotonic()
    r = subprocess.run([C] + args, capture_output=True, text=True)
    dt = (time.monotonic() - t) * 1e3
    if r.returncode != 0:
        raise SystemExit("cryo %s: %s" % (" ".join(args), r.stderr))
    return dt


res = {k: {"dump": [], "restore": []} for k in KINDS}
for i in range(ROUNDS):
    for kind in KINDS:
        d = tempfile.mkdtemp(prefix="bench-userns-")
        u, target = start(kind, d)
        res[kind]["dump"].append(timed(["dump", "-t", str(target), "-D", d + "/img", "-q"]))
        kill_wait(u)
        reap_all()
        extra = ["--pidns", "new"] if kind in PIDNS else []
        res[kind]["restore"].append(timed(["restore", "-D", d + "/img", "-d", "-q", "--pidfile", d + "/pid"] + extra))
        pid = int(open(d + "/pid").read())
        if kind in PIDNS:  # the namespace's init takes the copy with it
            with open("/proc/%d/stat" % pid) as f:
                kill_wait(int(f.read().rsplit(")", 1)[1].split()[1]))
        for c in children(pid) if os.path.exists("/proc/%d" % pid) else []:  # the restored workload, then unshare
            kill_wait(c)
        kill_wait(pid)
        shutil.rmtree(d)
with open("/proc/loadavg") as f:
    print("load average: %s" % " ".join(f.read().split()[:3]))
for kind, r in res.items():
    print("%-14s dump median %6.1f ms  restore median %6.1f ms  (n=%d)" %
          (kind, statistics.median(r["dump"]), statistics.median(r["restore"]), len(r["dump"])))
for base, kind in (("plain", "userns"), ("net-ipc-uts", "userns+net-ipc-uts"), ("pidns", "userns+pidns"),
                   ("time", "userns+time"), ("userns", "userns+time")):
    for op in ("dump", "restore"):
        b, k = statistics.median(res[base][op]), statistics.median(res[kind][op])
        print("%s/%s %s: %+.1f ms (x%.2f)" % (kind, base, op, k - b, k / b))
