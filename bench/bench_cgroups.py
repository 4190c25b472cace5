#!/usr/bin/env python3
"""bench_cgroups: what recording and writing back cgroup limits costs. One
process (sleep) in nested cgroups with limits in every v1 hierarchy of
cgroup_settings.cc mounted here (memory, pids, cpu, cpuset) and on cgroup2
(cgroup.max.*): dump (kill mode) then restore -d into cgroups removed
meanwhile (made again by the restore), with NEW (records and writes the
limits) and BASE (an older cryo: membership only), alternating in each
round; wall time of each cryo command and, for NEW, the time its logs give
for reading the settings (dump) and for placing the cgroups (restore).
Run as root from the build tree: bench_cgroups.py NEW BASE [ROUNDS].
"""
import ctypes
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the restored process comes to us

NEW, BASE = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
TAG = "cryo-bench-cg-%d" % os.getpid()
# mount point -> [(relative dir, {file: value})], parents first; the process in the last.
LAYOUT = {
    "/sys/fs/cgroup/memory": [("", {"memory.limit_in_bytes": "536870912"}),
                              ("r", {"memory.limit_in_bytes": "268435456", "memory.swappiness": "17"}),
                              ("r/c", {"memory.soft_limit_in_bytes": "134217728"})],
    "/sys/fs/cgroup/pids": [("", {}), ("r", {"pids.max": "40"}), ("r/c", {"pids.max": "9"})],
    "/sys/fs/cgroup/cpu": [("", {}), ("r", {"cpu.cfs_period_us": "50000", "cpu.cfs_quota_us": "40000",
                                            "cpu.shares": "512"})],
    "/sys/fs/cgroup/cpuset": [("", {}), ("c", {})],
    "/sys/fs/cgroup/unified": [("", {}), ("a", {"cgroup.max.descendants": "5"}), ("a/b", {"cgroup.max.depth": "2"})],
}
LAYOUT = {mp: dirs for mp, dirs in LAYOUT.items() if os.path.isdir(mp)}


def own_cgroup(mp):
    want = {"/sys/fs/cgroup/unified": ""}.get(mp, os.path.basename(mp))
    for line in open("/proc/self/cgroup"):
        _, h, path = line.rstrip("\n").split(":", 2)
        if h == want:
            return path
    raise SystemExit("not in hierarchy %s" % mp)


def dirs():
    for mp, layout in LAYOUT.items():
        base = mp + own_cgroup(mp).rstrip("/") + "/" + TAG
        for rel, files in layout:
            yield mp, (base + "/" + rel).rstrip("/"), files


def place(pid):
    for mp, d, files in dirs():
        if not os.path.isdir(d):
            os.mkdir(d)
            if mp.endswith("cpuset"):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    open(d + "/" + f, "w").write(open(os.path.dirname(d) + "/" + f).read().strip())
        for f, v in files.items():
            if open(d + "/" + f).read().strip() != v:
                open(d + "/" + f, "w").write(v)
    if pid:
        for mp, layout in LAYOUT.items():
            leaf = mp + own_cgroup(mp).rstrip("/") + "/" + TAG + "/" + layout[-1][0]
            open(leaf + "/cgroup.procs", "w").write(str(pid))


def remove():
    for _, d, _ in sorted(dirs(), key=lambda x: -len(x[1])):
        deadline = time.monotonic() + 5
        while os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def cryo(binary, args, log):
    t = time.monotonic()
    r = subprocess.run([binary] + args + ["-v", "--log-file", log], capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise SystemExit("%s %s: %s" % (binary, args, r.stderr))
    return (time.monotonic() - t) * 1e3


def log_ms(log, pattern):
    m = re.search(pattern, open(log).read())
    return float(m.group(1)) if m else None


def main():
    tmp = tempfile.mkdtemp(prefix="bench-cg-")
    pid = 0
    res = {NEW: {"dump": [], "restore": []}, BASE: {"dump": [], "restore": []}}
    read_ms, place_ms = [], []
    try:
        p = subprocess.Popen(["setsid", "sleep", "100000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        pid = p.pid
        place(pid)
        for rnd in range(ROUNDS):
            for b in ((NEW, BASE) if rnd % 2 == 0 else (BASE, NEW)):
                place(0)  # limits again (BASE's restore made the cgroups without them)
                img = os.path.join(tmp, "img-%d-%d" % (rnd, b == NEW))
                res[b]["dump"].append(cryo(b, ["dump", "-t", str(pid), "-D", img], img + ".dump.log"))
                kill(pid)  # reaps it (dead already)
                remove()
                res[b]["restore"].append(cryo(b, ["restore", "-D", img, "-d"], img + ".restore.log"))
                if b == NEW:
                    read_ms.append(log_ms(img + ".dump.log", r"cgroup settings of \d+ cgroups read in ([\d.]+) ms"))
                    place_ms.append(log_ms(img + ".restore.log", r"cgroups placed .* in ([\d.]+) ms"))
                shutil.rmtree(img)
        print("load average: %s" % open("/proc/loadavg").read().split()[:3])
        for b, name in ((BASE, "BASE"), (NEW, "NEW")):
            print("%-4s dump %7.1f ms  restore %7.1f ms  (medians of %d)" %
                  (name, statistics.median(res[b]["dump"]), statistics.median(res[b]["restore"]), ROUNDS))
        print("NEW  settings read at dump %.2f ms; cgroups made with settings at restore %.2f ms (medians; %s / %s)" %
              (statistics.median(read_ms), statistics.median(place_ms), read_ms, place_ms))
    finally:
        if pid:
            kill(pid)
        remove()
        shutil.rmtree(tmp, ignore_errors=True)


main()
