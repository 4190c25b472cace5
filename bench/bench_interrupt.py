#!/usr/bin/env python3
"""bench_interrupt: a long campaign of dumps interrupted or killed at random
moments; counts the runs and the originals harmed (the goal is 0).

Each run picks a workload (a tree of 13 processes, a process with 7 threads
in every kind of blocking call, one with 64 MiB in a parent and 2 children),
a mode (--leave-running or kill), a signal (SIGKILL most of the time, else
SIGINT, SIGTERM or SIGHUP) and a moment: a fault point drawn over the whole
dump (CRYO_FAULT_POINT: cryo raises the signal on itself at its Nth ptrace
request, remote system call or step) or, one run in four, a delay drawn over
the dump's length (the signal sent from outside). Then the checks of
tests/e2e/faultlib.py: the original is alive, not stopped, not traced, with
every thread's own mask, and passes its own verification; or, in kill mode
once the kill had begun, the image is complete and the restored tree passes
its verification. A run whose checks fail is "harmed" if the original tree
is dead, stopped, traced, has another mask or fails its verification, else an
"other failure" (the image left wrong, cryo's message missing).

Usage: bench_interrupt.py [--runs N] [--seed S] [--cryo PATH] [--workloads DIR] [--keep]
Exit status 0 when no original was harmed and nothing else failed, 1 otherwise.
"""
import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import cryotest  # noqa: E402
import faultlib  # noqa: E402


def find(arg, *candidates):
    for c in ([arg] if arg else []) + [os.path.join(ROOT, p) for p in candidates]:
        if c and os.path.exists(c):
            return os.path.abspath(c)
    sys.exit("not found: %s (build first, or pass the path)" % " or ".join(candidates))


def mappings(tree):
    """How many VMAs the processes of a tree have."""
    return sum(len(cryotest.read_text("/proc/%d/maps" % pid, "").splitlines()) for pid in tree)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--cryo")
    ap.add_argument("--workloads")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp/cryo-bench-interrupt-* directory")
    args = ap.parse_args()
    cryo = find(args.cryo, "build-bench/src/cli/cryo", "build/src/cli/cryo")
    workloads = find(args.workloads, "build-bench/tests/workloads", "build/tests/workloads")
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    cryotest._set_subreaper()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda signo, frame: (_ for _ in ()).throw(cryotest.HarnessAbort("signal %d" % signo)))
    tmp = tempfile.mkdtemp(prefix="cryo-bench-interrupt-", dir="/tmp")
    h = cryotest.Harness(cryo, workloads, tmp)
    print("bench_interrupt: %d runs, seed %d, cryo %s" % (args.runs, seed, cryo))
    live = {}       # kind -> workload
    totals = {}     # (kind, leave_running) -> fault points of a whole dump
    lengths = {}    # kind -> seconds of a whole --leave-running dump
    runs = harmed = other = leaks = 0
    by = {}
    t0 = time.monotonic()
    try:
        for n in range(1, args.runs + 1):
            kind = rng.choice(sorted(faultlib.WORKLOADS))
            leave_running = rng.random() < 0.5
            sig = "KILL" if rng.random() < 0.6 else rng.choice(["INT", "TERM", "HUP"])
            if kind not in live:
                live[kind] = faultlib.start(h, kind)
                scratch = os.path.join(tmp, "img-measure")
                s0 = time.monotonic()
                totals[(kind, True)] = faultlib.count_points(h, live[kind], scratch, True)
                lengths[kind] = time.monotonic() - s0
                shutil.rmtree(scratch, ignore_errors=True)
            w = live[kind]
            total = totals[(kind, True)] + (0 if leave_running else 10)
            images = os.path.join(tmp, "img-%d" % n)
            before = faultlib.snapshot(w.pid)
            maps = mappings(before)
            point = delay = None
            if rng.random() < 0.25:
                delay = lengths[kind] * rng.random()
                how = "after %.1f ms" % (delay * 1e3)
            else:
                point = rng.randint(1, total)
                how = "at fault point %d/%d" % (point, total)
            what = "run %d: %s, %s mode, SIG%s %s" % (n, kind, "leave-running" if leave_running else "kill", sig, how)
            runs += 1
            by[(kind, sig)] = by.get((kind, sig), 0) + 1
            try:
                live[kind] = faultlib.interrupted_dump(h, w, images, leave_running, sig, what, point, delay)
                if live[kind] is w and mappings(before) > maps:
                    leaks += 1  # the scratch memory of a killed cryo (architecture.md, "Tracer death")
            except cryotest.TestFailure as e:
                problem = faultlib.free_of_cryo(before, timeout=1.0)
                original = problem is not None or not cryotest.pid_alive(w.pid)
                if original:
                    harmed += 1
                else:
                    other += 1
                detail = str(e).splitlines()[:40]  # the check, then cryo's command, status and stderr
                print("%s: %s\n  %s" % ("HARMED" if original else "FAILED", what, "\n  ".join(detail)))
                shutil.rmtree(images, ignore_errors=True)
                if cryotest.pid_alive(w.pid):
                    faultlib.kill_tree(h, w.pid)
                live.pop(kind, None)
            if n % 25 == 0:
                print("  %d runs, %d harmed, %d other failures (%.0f s)" % (n, harmed, other, time.monotonic() - t0))
                sys.stdout.flush()
    except cryotest.HarnessAbort as e:
        print("aborted: %s" % e)
    finally:
        for w in live.values():
            if cryotest.pid_alive(w.pid):
                faultlib.kill_tree(h, w.pid)
        problems = h.cleanup()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nbench_interrupt: %d runs in %.0f s (seed %d): %d originals harmed, %d other failures, "
          "%d left an unused mapping behind" % (runs, time.monotonic() - t0, seed, harmed, other, leaks))
    for (kind, sig), k in sorted(by.items()):
        print("  %-8s SIG%-4s %d runs" % (kind, sig, k))
    for p in problems:
        print("cleanup: %s" % p)
    return 0 if harmed == 0 and other == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
