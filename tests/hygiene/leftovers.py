#!/usr/bin/env python3
"""What the test suite leaves on the machine.

    leftovers.py snapshot FILE   records the machine's shared objects in FILE
    leftovers.py compare FILE    names every object that is there now and was
                                 not in FILE; exit 1 if there is one

Objects that outlive the processes of a test and that a later run (or the
user's programs) would trip over: SysV shared memory segments, semaphore sets
and message queues, POSIX shared memory and message queues, network
namespaces, nftables tables, mounts of this mount namespace, huge page
reservations. scripts/test.sh takes a snapshot before the suite and compares
after it: a test that does not remove what it made, also when it fails, is a
defect of that test.
"""
import json
import os
import subprocess
import sys


def _lines(path, skip_header=True):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return lines[1:] if skip_header else lines


def _sysv(kind):
    # /proc/sysvipc/{shm,sem,msg}: key and id, then the owner columns.
    out = []
    for line in _lines("/proc/sysvipc/" + kind):
        w = line.split()
        if len(w) >= 2:
            out.append("SysV %s key %s id %s" % (kind, w[0], w[1]))
    return out


def _dir(path, what):
    try:
        return ["%s %s" % (what, os.path.join(path, n)) for n in os.listdir(path)]
    except OSError:
        return []


def _cmd(argv, what):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["%s %s" % (what, line.split()[0]) for line in p.stdout.splitlines() if line.strip()]


def _nft_tables():
    try:
        p = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["nftables %s" % line.strip() for line in p.stdout.splitlines() if line.startswith("table")]


def _mounts():
    out = []
    for line in _lines("/proc/self/mountinfo", skip_header=False):
        w = line.split()
        if len(w) > 4:
            out.append("mount %s" % w[4])
    return out


def _hugepages():
    out = []
    base = "/sys/kernel/mm/hugepages"
    for size in sorted(_dir(base, "")):
        d = size.strip()
        for f in ("nr_hugepages", "nr_overcommit_hugepages"):
            v = (_lines(os.path.join(d, f), skip_header=False) or ["?"])[0]
            out.append("huge pages %s %s=%s" % (os.path.basename(d), f, v))
    return out


def objects():
    return sorted(set(_sysv("shm") + _sysv("sem") + _sysv("msg") + _dir("/dev/shm", "POSIX shm") +
                      _dir("/dev/mqueue", "POSIX mqueue") + _cmd(["ip", "netns", "list"], "netns") +
                      _nft_tables() + _mounts() + _hugepages()))


def main(argv):
    if len(argv) != 3 or argv[1] not in ("snapshot", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "snapshot":
        with open(argv[2], "w") as f:
            json.dump(objects(), f)
        return 0
    with open(argv[2]) as f:
        before = set(json.load(f))
    new = [o for o in objects() if o not in before]
    if not new:
        print("leftovers: none (SysV IPC, POSIX shm and mqueues, netns, nftables, mounts, huge pages)")
        return 0
    print("leftovers: the tests left %d object(s) on the machine:" % len(new), file=sys.stderr)
    for o in new:
        print("  " + o, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
