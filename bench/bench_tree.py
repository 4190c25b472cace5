#!/usr/bin/env python3
"""bench_tree: `cryo dump` and `cryo restore` of process trees of 10, 50 and
200 processes, per process.

The tree is tests/workloads/tree with RING = N - 9: a session leader (the
root, a child subreaper), a process group leader with a child, a process in
that group, a zombie, a process in a group whose leader has exited, one in a
session whose leader has exited, one with another exit signal, one with a
parent-death signal, and RING ring members passing tokens through pipes, a
shared file offset and a shared anonymous mapping: N processes in all (the
zombie included; the restore adds two temporary leaders).

Each round, for each size (order rotated between rounds, after --warmup
untimed rounds):
  dump      start a fresh tree, wait for `ready`, sync, then time
            `cryo dump -t ROOT -D DIR` (kill mode) from spawn to exit; reap the
            root and wait until every pid of the tree is gone (their orphans
            come to us, a child subreaper).
  restore   time `cryo restore -D DIR --detach --pidfile F` from spawn to exit
            (cryo returns once the whole tree runs); then, untimed: the root
            must be our child again, and the tree's own verify must say OK
            (ids, parents, groups, sessions, counters advancing, ring tokens,
            shared memory and offset, the zombie); then every pid is killed and
            reaped.

With --baseline PATH (another cryo binary, e.g. one built from the commit
before a change), each round also restores the same image with it, in turns
(which binary goes first alternates between rounds), under the same
checks; the summary then gives both medians and their ratio.

Prints, per size, the medians, the time per process (target: dump < 2 ms,
restore < 1 ms per process), cryo's own phase timings from its log, and the
marginal cost per process between the smallest and the largest tree.  Exit
status 0 when the runs succeeded (targets missed are reported, not failed), 1
if a run failed, 2 on bad setup.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

DUMP_TARGET_S = 0.002      # per process
RESTORE_TARGET_S = 0.001   # per process
PID_SETTLE_S = 0.2         # a freed pid can stay busy a moment (DESIGN.md)

# (label, regex) pairs read from cryo's debug log; missing ones print "?".
DUMP_PHASES = [
    ("seize", r"seized in ([\d.]+) ms"),
    ("describe+audit", r"described and audited in ([\d.]+) ms"),
    ("task state", r"task state of \d+ processes collected in ([\d.]+) ms"),
    ("pages", r"processes' pages written in ([\d.]+) ms"),
    ("records+sync", r"records written and synced in ([\d.]+) ms"),
    ("kill", r"tree killed in ([\d.]+) ms"),
]
RESTORE_PHASES = [
    ("load", r"loaded, validated and its files opened in ([\d.]+) ms"),
    ("created", r"processes created in ([\d.]+) ms"),
    ("rebuilt", r"threads rebuilt in ([\d.]+) ms"),
]


def timed_restore(b, args, img, pid, pids, ctl, logdir, tag, cryo):
    """One `cryo restore` of img with the binary `cryo` (timed), then the
    tree's own verify, then every pid killed (untimed)."""
    rlog = os.path.join(logdir, "restore-%s.log" % tag)
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    b.tracked.update(pids)
    saved, b.cryo = b.cryo, cryo
    try:
        # The tree appends to its shared log: a second restore of the image
        # finds it grown, as the program itself left it.
        wall, rss = b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile,
                                    "--allow-changed", os.path.join(ctl, "shared.log")], rlog)
    finally:
        b.cryo = saved
    txt = (benchlib.read_text(pidfile, "") or "").strip()
    if txt != str(pid):
        raise BenchError("restore --pidfile %s holds %r, expected %d" % (pidfile, txt, pid))
    b.wait_running(pid)
    verdict = b.verify(pid, ctl) if args.verify else "not verified"
    b.kill_all(pids)
    b.wait_gone(pids)
    time.sleep(PID_SETTLE_S)
    return wall, rss, verdict, rlog


def tree_round(b, args, n, logdir, tag, base_first=False):
    ring = n - 9
    pid, ctl, _ = b.start_ready(lambda c: [args.tree_bin, c, str(ring)], "tree of %d" % n, timeout=60)
    pids = benchlib.tree_pids(pid)
    if len(pids) != n:
        raise BenchError("tree with RING=%d has %d processes (%s), expected %d" % (ring, len(pids), pids[:8], n))
    b.tracked.update(pids)
    img = os.path.join(logdir, "img-%s" % tag)
    os.sync()
    dlog = os.path.join(logdir, "dump-%s.log" % tag)
    dump_wall, dump_rss = b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], dlog)
    b.reap(pid, timeout=20.0)  # our child, killed by cryo
    b.wait_gone(pids)
    time.sleep(PID_SETTLE_S)
    base = None
    if args.baseline and base_first:
        base = timed_restore(b, args, img, pid, pids, ctl, logdir, tag + "-base", args.baseline)
    restore_wall, restore_rss, verdict, rlog = timed_restore(b, args, img, pid, pids, ctl, logdir, tag, b.cryo)
    if args.baseline and not base_first:
        base = timed_restore(b, args, img, pid, pids, ctl, logdir, tag + "-base", args.baseline)
    # The image stays until the end: on ext4 without a journal, creating files
    # where many were deleted in the last 30 s is slow (see README).
    r = {"dump": dump_wall, "restore": restore_wall, "dump_rss": dump_rss, "restore_rss": restore_rss,
         "verify": verdict}
    if base:  # (its verify raised if it failed)
        r["restore_base"] = base[0]
    for label, rx in DUMP_PHASES:
        r["d:" + label] = benchlib.log_ms(dlog, rx)
    for label, rx in RESTORE_PHASES:
        r["r:" + label] = benchlib.log_ms(rlog, rx)
    return r


def phase_line(rows, phases, prefix):
    out = []
    for label, _ in phases:
        vals = [r[prefix + label] for r in rows if r[prefix + label] is not None]
        out.append("%s %s" % (label, "%.1f ms" % median(vals) if vals else "?"))
    return ", ".join(out)


def body(b):
    args = b.args
    args.tree_bin = benchlib.find_binary(args.tree, "tests/workloads/tree", "the tree workload")
    logdir = b.fresh_dir("logs")
    print("trees of %s processes; %d warm-up + %d timed rounds; tree workload %s"
          % (",".join(map(str, args.sizes)), args.warmup, args.runs, args.tree_bin))
    res = {n: [] for n in args.sizes}
    busy_list = []
    for i in range(args.warmup + args.runs):
        timed = i >= args.warmup
        busy = benchlib.wait_quiet(args.quiet_wait)
        order = args.sizes[i % len(args.sizes):] + args.sizes[:i % len(args.sizes)]
        line = []
        for n in order:
            r = tree_round(b, args, n, logdir, "%d-%02d" % (n, i), base_first=i % 2 == 1)
            if timed:
                res[n].append(r)
            line.append("%d: dump %s restore %s%s %s" % (
                n, fmt_s(r["dump"]), fmt_s(r["restore"]),
                " (baseline %s)" % fmt_s(r["restore_base"]) if "restore_base" in r else "",
                r["verify"].split(" verifies")[0]))
        if timed:
            busy_list.append(busy)
        print("%s %d (cpu %2.0f%% busy before): %s" % ("run" if timed else "warm-up",
                                                       i - args.warmup + 1 if timed else i + 1,
                                                       busy * 100, "; ".join(line)))
        sys.stdout.flush()

    print()
    print("== bench_tree: medians of %d runs ==" % args.runs)
    print("%6s  %-10s %-12s %-10s %-12s  %s" % ("procs", "dump", "per process", "restore", "per process", "met?"))
    med = {}
    for n in args.sizes:
        d = median([r["dump"] for r in res[n]])
        rs = median([r["restore"] for r in res[n]])
        med[n] = (d, rs)
        ok_d = d / n < DUMP_TARGET_S
        ok_r = rs / n < RESTORE_TARGET_S
        print("%6d  %-10s %-12s %-10s %-12s  dump %s, restore %s"
              % (n, fmt_s(d), "%.2f ms" % (d / n * 1e3), fmt_s(rs), "%.2f ms" % (rs / n * 1e3),
                 "OK" if ok_d else "MISSED", "OK" if ok_r else "MISSED"))
    print("targets: dump < %.0f ms, restore < %.0f ms per process" % (DUMP_TARGET_S * 1e3, RESTORE_TARGET_S * 1e3))
    lo, hi = min(args.sizes), max(args.sizes)
    if hi > lo:
        print("marginal cost per process (%d -> %d): dump %.2f ms, restore %.2f ms"
              % (lo, hi, (med[hi][0] - med[lo][0]) / (hi - lo) * 1e3, (med[hi][1] - med[lo][1]) / (hi - lo) * 1e3))
    if args.baseline:
        print("against the baseline %s (same rounds, in turns):" % args.baseline)
        for n in args.sizes:
            rs = median([r["restore"] for r in res[n]])
            rb = median([r["restore_base"] for r in res[n]])
            per_round = median([r["restore"] / r["restore_base"] for r in res[n]])
            print("  %4d restore: %s, baseline %s: ratio %.2f (median of the rounds' ratios %.2f)"
                  % (n, fmt_s(rs), fmt_s(rb), rs / rb, per_round))
    print("cryo's own phases (log, medians):")
    for n in args.sizes:
        print("  %4d dump:    %s" % (n, phase_line(res[n], DUMP_PHASES, "d:")))
        print("  %4d restore: %s" % (n, phase_line(res[n], RESTORE_PHASES, "r:")))
    print("cryo peak RSS (info): %s" % ", ".join(
        "%d: dump %.1f MiB, restore %.1f MiB" % (n, max(r["dump_rss"] for r in res[n]) / 1024.0,
                                                 max(r["restore_rss"] for r in res[n]) / 1024.0)
        for n in args.sizes))
    if busy_list and max(busy_list) > 0.15:
        print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
              % (max(busy_list) * 100))
    for n in args.sizes:
        print("all %d raw: dump %s; restore %s%s" % (
            n, ", ".join("%.3f" % r["dump"] for r in res[n]), ", ".join("%.3f" % r["restore"] for r in res[n]),
            "; baseline restore " + ", ".join("%.3f" % r["restore_base"] for r in res[n]) if args.baseline else ""))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--tree", help="tree workload binary (default: build-bench/ or build/ tests/workloads/tree)")
    ap.add_argument("--sizes", default="10,50,200",
                    help="comma-separated tree sizes in processes, each 7..261 (default 10,50,200)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another cryo binary: each round also restores the image with it, in turns; prints the ratio")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="do not have the restored tree verify itself (saves ~0.5 s a round)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    if args.baseline and not (os.path.isfile(args.baseline) and os.access(args.baseline, os.X_OK)):
        ap.error("--baseline: %s is not an executable file" % args.baseline)
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        ap.error("--sizes: comma-separated integers")
    if any(n < 10 or n > 265 for n in args.sizes):
        ap.error("--sizes: each size must be 10..265 (the tree workload's ring is 1..256)")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
