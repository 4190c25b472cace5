#!/usr/bin/env python3
"""bench_pidns: the extra cost of `cryo restore --pidns new` (a new PID and
mount namespace with its own /proc, cryo's init as pid 1) over a plain
restore, for a trivial process and for a tree of 50 processes.

Each image is dumped once (kill mode): memtouch with 0 MiB, and
tests/workloads/tree with RING = 41 (50 processes, the zombie included). Then,
after --warmup untimed rounds, each round (order alternating) times, from
spawn to exit:
  plain     `cryo restore -D DIR -d --pidfile F`
  pidns     `cryo restore -D DIR -d --pidfile F --pidns new`
and, untimed, checks that the restored root runs (its verify says OK), then
kills it (the plain tree by pid; the copy by SIGKILL to its init, which takes
the namespace with it) and waits until it is gone.

Prints the medians of both, their difference (goal: <= 2 ms) and the raw
times. Exit status 0 when the runs succeeded (a missed goal is reported, not
failed), 1 if a run failed, 2 on bad setup.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median, proc_stat  # noqa: E402

GOAL_S = 0.002
PID_SETTLE_S = 0.2  # a freed pid can stay busy a moment (DESIGN.md)


def wait_root(b, pid, pidns, timeout=10.0):
    """Wait until the restored root runs, as our child (plain) or as the child
    of an init that is our child (pidns). Returns the init's pid (or None)."""
    deadline = time.monotonic() + timeout
    while True:
        st = proc_stat(pid)
        if st and st["state"] in ("S", "R", "D"):
            parent = proc_stat(st["ppid"]) if pidns else None
            if not pidns and st["ppid"] == os.getpid():
                return None
            if pidns and parent and parent["ppid"] == os.getpid():
                return st["ppid"]
        if st is None or st["state"] in ("Z", "X") or time.monotonic() > deadline:
            raise BenchError("restored pid %d not running as expected (state %s)" % (pid, st and st["state"]))
        time.sleep(0.002)


def restore_once(b, img, ctl, pids, pidns, logdir, tag):
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    log = os.path.join(logdir, "restore-%s.log" % tag)
    argv = ["restore", "-D", img, "-d", "--pidfile", pidfile] + (["--pidns", "new"] if pidns else [])
    if not pidns:
        b.tracked.update(pids)
    wall, _ = b.cryo_or_fail(argv, log)
    root = int((benchlib.read_text(pidfile, "") or "0").strip() or 0)
    if not pidns and root != pids[0]:
        raise BenchError("restore --pidfile %s holds %d, expected %d" % (pidfile, root, pids[0]))
    b.tracked.add(root)
    init = wait_root(b, root, pidns)
    b.verify(root, ctl)
    if pidns:
        b.tracked.add(init)
        b.kill(init)  # the kernel kills the rest of its namespace
        b.wait_gone([root])
    else:
        b.kill_all(pids)
        b.wait_gone(pids)
        time.sleep(PID_SETTLE_S)
    return wall


def bench_image(b, args, what, make_argv, logdir):
    pid, ctl, _ = b.start_ready(make_argv, what, timeout=60)
    pids = benchlib.tree_pids(pid)
    b.tracked.update(pids)
    img = os.path.join(logdir, "img-%s" % what.split()[0])
    b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], os.path.join(logdir, "dump-%s.log" % what.split()[0]))
    b.reap(pid, timeout=20.0)
    b.wait_gone(pids)
    time.sleep(PID_SETTLE_S)
    res = {False: [], True: []}
    busy = benchlib.wait_quiet(args.quiet_wait)
    for i in range(args.warmup + args.runs):
        order = [False, True] if i % 2 == 0 else [True, False]
        for pidns in order:
            wall = restore_once(b, img, ctl, pids, pidns, logdir, "%s-%s-%02d" % (what.split()[0], pidns, i))
            if i >= args.warmup:
                res[pidns].append(wall)
    plain, ns = median(res[False]), median(res[True])
    print("== %s (%d processes), medians of %d runs (cpu %.0f%% busy before) ==" % (what, len(pids), args.runs,
                                                                                    busy * 100))
    print("plain restore -d            %s" % fmt_s(plain))
    print("restore -d --pidns new      %s" % fmt_s(ns))
    print("extra cost                  %.2f ms   goal <= %.0f ms  %s"
          % ((ns - plain) * 1e3, GOAL_S * 1e3, "OK" if ns - plain <= GOAL_S else "MISSED"))
    print("all plain raw (ms): %s" % ", ".join("%.2f" % (w * 1e3) for w in res[False]))
    print("all pidns raw (ms): %s" % ", ".join("%.2f" % (w * 1e3) for w in res[True]))
    print()
    sys.stdout.flush()


def body(b):
    args = b.args
    tree = benchlib.find_binary(args.tree, "tests/workloads/tree", "the tree workload")
    logdir = b.fresh_dir("logs")
    print("plain restore against --pidns new: %d warm-up + %d timed rounds" % (args.warmup, args.runs))
    bench_image(b, args, "trivial process", lambda c: [b.memtouch, c, "0"], logdir)
    bench_image(b, args, "tree of 50", lambda c: [tree, c, "41"], logdir)
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--tree", help="tree workload binary (default: build-bench/ or build/ tests/workloads/tree)")
    ap.add_argument("--runs", type=int, default=15, help="timed rounds (default 15, at least 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (default 2)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
