#!/usr/bin/env python3
"""bench_threads: `cryo dump` and `cryo restore` of a process with 64 threads
against the same process with one thread and the same memory.

The workload is bench/memthreads (memtouch with THREADS-1 worker threads
sleeping in nanosleep(20 ms) and counting their wake-ups).  For each memory
size of --mib (default 0 and 256 MiB), each round times both thread counts
(order alternating, after --warmup untimed rounds):
  dump      start memthreads, wait for `ready`, sync, then time
            `cryo dump -t PID -D DIR` (kill mode) from spawn to exit; reap it.
  restore   time `cryo restore -D DIR --detach --pidfile F` from spawn to exit;
            then, untimed: the process must be our child again and its verify
            must say OK (every page, THREADS tasks in /proc/self/task, every
            worker's count advancing); then it is killed and reaped.

Prints the medians and, per memory size, (64 threads) / (1 thread) for dump
and restore (target <= 2).  Exit status 0 when the runs succeeded (targets
missed are reported, not failed), 1 if a run failed, 2 on bad setup.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

RATIO_TARGET = 2.0
PID_SETTLE_S = 0.1  # a freed pid can stay busy a moment (DESIGN.md)


def threads_round(b, args, mib, threads, logdir, tag):
    what = "memthreads %d MiB %d threads" % (mib, threads)
    pid, ctl, _ = b.start_ready(lambda c: [args.memthreads_bin, c, str(mib), str(threads)], what)
    tasks = len(os.listdir("/proc/%d/task" % pid))
    if tasks != threads:
        raise BenchError("%s has %d tasks" % (what, tasks))
    img = os.path.join(logdir, "img-%s" % tag)
    os.sync()
    b.warm()
    dlog = os.path.join(logdir, "dump-%s.log" % tag)
    dump_wall, dump_rss = b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], dlog)
    b.reap(pid, timeout=20.0)
    time.sleep(PID_SETTLE_S)
    b.warm()
    rlog = os.path.join(logdir, "restore-%s.log" % tag)
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    b.tracked.add(pid)
    restore_wall, restore_rss = b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile], rlog)
    txt = (benchlib.read_text(pidfile, "") or "").strip()
    if txt != str(pid):
        raise BenchError("restore --pidfile %s holds %r, expected %d" % (pidfile, txt, pid))
    b.wait_running(pid)
    verdict = b.verify(pid, ctl)
    if "%d threads" % threads not in verdict:
        raise BenchError("%s restored: verify said %r" % (what, verdict))
    b.kill(pid)
    benchlib.rmtree(img)
    return {"dump": dump_wall, "restore": restore_wall, "dump_rss": dump_rss, "verify": verdict,
            "task_ms": benchlib.log_ms(dlog, r"task state ([\d.]+) ms"),
            "rebuilt_ms": benchlib.log_ms(rlog, r"threads rebuilt in ([\d.]+) ms")}


def body(b):
    args = b.args
    args.memthreads_bin = benchlib.find_binary(args.memthreads, "bench/memthreads", "memthreads")
    logdir = b.fresh_dir("logs")
    counts = [1, args.threads]
    print("memthreads with %s threads, %s MiB; %d warm-up + %d timed rounds; %d MiB warmed before each timed step"
          % (" and ".join(map(str, counts)), ",".join(map(str, args.mib)), args.warmup, args.runs, args.warm_mib))
    res = {(m, t): [] for m in args.mib for t in counts}
    busy_list = []
    for i in range(args.warmup + args.runs):
        timed = i >= args.warmup
        busy = benchlib.wait_quiet(args.quiet_wait)
        line = []
        for mib in args.mib:
            for t in (counts if i % 2 == 0 else counts[::-1]):
                r = threads_round(b, args, mib, t, logdir, "%d-%d-%02d" % (mib, t, i))
                if timed:
                    res[(mib, t)].append(r)
                line.append("%d MiB x%d: dump %s restore %s" % (mib, t, fmt_s(r["dump"]), fmt_s(r["restore"])))
        if timed:
            busy_list.append(busy)
        print("%s %d (cpu %2.0f%% busy before): %s" % ("run" if timed else "warm-up",
                                                       i - args.warmup + 1 if timed else i + 1,
                                                       busy * 100, "; ".join(line)))
        sys.stdout.flush()

    print()
    print("== bench_threads: medians of %d runs ==" % args.runs)
    for mib in args.mib:
        one, many = res[(mib, 1)], res[(mib, args.threads)]
        d1, dn = median([r["dump"] for r in one]), median([r["dump"] for r in many])
        r1, rn = median([r["restore"] for r in one]), median([r["restore"] for r in many])
        print("%4d MiB  dump:    1 thread %-9s %d threads %-9s ratio %.2f  target <= %.1f  %s"
              % (mib, fmt_s(d1), args.threads, fmt_s(dn), dn / d1, RATIO_TARGET,
                 "OK" if dn / d1 <= RATIO_TARGET else "MISSED"))
        print("%4d MiB  restore: 1 thread %-9s %d threads %-9s ratio %.2f  target <= %.1f  %s"
              % (mib, fmt_s(r1), args.threads, fmt_s(rn), rn / r1, RATIO_TARGET,
                 "OK" if rn / r1 <= RATIO_TARGET else "MISSED"))
        tm = [r["task_ms"] for r in many if r["task_ms"] is not None]
        t1 = [r["task_ms"] for r in one if r["task_ms"] is not None]
        if tm and t1:
            print("          (cryo log: task state 1 thread %.1f ms, %d threads %.1f ms)"
                  % (median(t1), args.threads, median(tm)))
    if busy_list and max(busy_list) > 0.15:
        print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
              % (max(busy_list) * 100))
    for (mib, t), rows in sorted(res.items()):
        print("all %d MiB x%d raw: dump %s; restore %s" % (mib, t, ", ".join("%.3f" % r["dump"] for r in rows),
                                                          ", ".join("%.3f" % r["restore"] for r in rows)))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=1024)
    ap.add_argument("--memthreads", help="memthreads binary (default: build-bench/ or build/ bench/memthreads)")
    ap.add_argument("--threads", type=int, default=64, help="threads of the multi-threaded process (default 64)")
    ap.add_argument("--mib", default="0,256", help="comma-separated memory sizes in MiB (default 0,256)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    if not 2 <= args.threads <= 1024:
        ap.error("--threads must be 2..1024")
    try:
        args.mib = [int(x) for x in args.mib.split(",")]
    except ValueError:
        ap.error("--mib: comma-separated integers")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
