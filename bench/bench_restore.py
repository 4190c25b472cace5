#!/usr/bin/env python3
"""bench_restore: `cryo restore` of a 1 GiB image against a plain read() of the
same bytes from the page cache, and restore latency of a trivial process.

Part 1, 1 GiB (--mib): memtouch with --mib MiB is dumped once (kill mode).
Then, after --warmup untimed rounds, each round (order alternating):
  cryo      time `cryo restore -D DIR --detach --pidfile F` from spawn to exit
            (cryo returns once the process runs); then, untimed: check the
            process runs as our child (we are a child subreaper), ask memtouch
            to verify every page, SIGKILL it and reap it.
  read      baseline_io reads the image's pages-PID.img (in the page cache:
            it reports the resident fraction) into a freshly mmapped, untouched
            buffer with 64 MiB read() calls, single-threaded (timed in C).
Prints the medians and cryo/read (target <= 0.8).
With --huge, memtouch's memory is in transparent huge pages (MADV_HUGEPAGE,
2 MiB-aligned; --huge collapse: MADV_COLLAPSE once written, no "hg"), and
each round also times, interleaved:
  small     the same restore with CRYO_PRETEND_MISSING=madv-collapse (the
            memory comes back in small pages, as before THP-backed restore)
With --baseline PATH, each round also times that cryo binary's restore of
the same image ("base": e.g. a build of the commit before a change).
Every restore's AnonHugePages (smaps_rollup, before the kill) is printed.

Part 2, trivial (--trivial-runs, default 20): memtouch with 0 MiB is dumped
once; each run times `cryo restore -d` returning (target: median < 10 ms),
then verifies, kills and reaps the process.

With --warm-mib N (default 0 here) N MiB of memory is touched and freed right
before each timed step; before each round the script waits (bounded) for idle
CPUs; see README.
Exit status 0 when the runs succeeded (missed targets are reported, not
failed), 1 if a run failed, 2 on bad setup.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

RATIO_TARGET = 0.8
TRIVIAL_TARGET_S = 0.010


def dump_once(b, mib, name, huge=None):
    pid, ctl, _ = b.start_memtouch(mib, huge=huge)
    img = b.path(name)
    log = b.path(name + "-dump.log")
    b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], log)
    b.reap(pid)  # killed by cryo; reap our child so the pid is free again
    return pid, ctl, img


def anon_huge_mib(pid):
    for line in (benchlib.read_text("/proc/%d/smaps_rollup" % pid, "") or "").splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def restore_round(b, pid, ctl, img, logdir, tag, verify=True, cryo=None, env=None):
    """`cryo`: another cryo binary; `env`: variables set for that restore."""
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    log = os.path.join(logdir, "restore-%s.log" % tag)
    b.tracked.add(pid)
    saved_cryo, saved_env = b.cryo, {k: os.environ.get(k) for k in (env or {})}
    try:
        b.cryo = cryo or b.cryo
        os.environ.update(env or {})
        wall, rss = b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile], log)
    finally:
        b.cryo = saved_cryo
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    txt = (benchlib.read_text(pidfile, "") or "").strip()
    if txt != str(pid):
        raise BenchError("restore --pidfile %s holds %r, expected %d" % (pidfile, txt, pid))
    b.wait_running(pid)
    verdict = b.verify(pid, ctl) if verify else "not verified"
    huge = anon_huge_mib(pid)
    b.kill(pid)
    return {"wall": wall, "rss_kib": rss, "verify": verdict, "huge_mib": huge,
            "load_ms": benchlib.log_ms(log, r"loaded and validated in ([\d.]+) ms"),
            "as_ms": benchlib.log_ms(log, r"address space rebuilt in ([\d.]+) ms"),
            "total_ms": benchlib.log_ms(log, r"restored from .* in ([\d.]+) ms")}


def body(b):
    args = b.args
    logdir = b.fresh_dir("logs")
    b.baseline_io()
    out = {}

    if args.mib > 0:
        print("restore of %d MiB: %d warm-up + %d timed rounds; %d MiB warmed before each timed step"
              % (args.mib, args.warmup, args.runs, args.warm_mib))
        pid, ctl, img = dump_once(b, args.mib, "img", huge={"advice": "huge", "collapse": "collapse"}.get(args.huge))
        pages = os.path.join(img, "pages-%d.img" % pid)
        if not os.path.isfile(pages):
            raise BenchError("no %s after the dump (image holds %s)" % (pages, sorted(os.listdir(img))))
        size = os.path.getsize(pages)
        print("image %s: pages file %.1f MiB" % (img, size / 2**20))
        kinds = ["cryo", "read"] + (["small"] if args.huge else []) + (["base"] if args.baseline else [])
        res = {k: [] for k in kinds}
        busy_list = []
        for i in range(args.warmup + args.runs):
            timed = i >= args.warmup
            busy = benchlib.wait_quiet(args.quiet_wait)
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            if i % 2:
                order.reverse()
            line = []
            for k in order:
                b.warm()
                if k != "read":
                    r = restore_round(b, pid, ctl, img, logdir, "%s-%02d" % (k, i),
                                      cryo=args.baseline if k == "base" else None,
                                      env={"CRYO_PRETEND_MISSING": "madv-collapse"} if k == "small" else None)
                    line.append("%s %s (log: as rebuilt %s, total %s; %.0f MiB huge) %s"
                                % (k, fmt_s(r["wall"]), "%.0f ms" % r["as_ms"] if r["as_ms"] else "?",
                                   "%.0f ms" % r["total_ms"] if r["total_ms"] else "?", r["huge_mib"], r["verify"]))
                else:
                    kv = b.run_baseline(["read", pages, "--chunk-mib", str(args.chunk_mib)])
                    r = {"wall": float(kv["seconds"]), "resident": float(kv["resident"])}
                    if r["resident"] < 0.99:
                        print("WARNING: only %.1f%% of %s was in the page cache" % (r["resident"] * 100, pages))
                    line.append("read %s (%.0f%% cached)" % (fmt_s(r["wall"]), r["resident"] * 100))
                if timed:
                    res[k].append(r)
            if timed:
                busy_list.append(busy)
            print("%s %d (cpu %2.0f%% busy before): %s"
                  % ("run" if timed else "warm-up", i - args.warmup + 1 if timed else i + 1,
                     busy * 100, "; ".join(line)))
            sys.stdout.flush()
        cryo = median([r["wall"] for r in res["cryo"]])
        rd = median([r["wall"] for r in res["read"]])
        as_ms = [r["as_ms"] / 1e3 for r in res["cryo"] if r["as_ms"] is not None]
        gib = size / 2**30
        out["big"] = (cryo, rd)
        print()
        print("== bench_restore: %d MiB, medians of %d runs ==" % (args.mib, args.runs))
        print("cryo restore -d (wall, spawn to exit)  %-10s  %.2f GiB/s" % (fmt_s(cryo), gib / cryo))
        if as_ms:
            print("  of which until address space rebuilt %-10s  (cryo log)" % fmt_s(median(as_ms)))
        print("read() from page cache baseline        %-10s  %.2f GiB/s" % (fmt_s(rd), gib / rd))
        print("ratio cryo / read                      %.2f   target <= %.1f  %s"
              % (cryo / rd, RATIO_TARGET, "OK" if cryo / rd <= RATIO_TARGET else "MISSED"))
        print("restored in huge pages                 median %.0f MiB" % median([r["huge_mib"] for r in res["cryo"]]))
        for k, what in (("small", "in small pages (madv-collapse missing)"), ("base", "by --baseline")):
            if res.get(k):
                m = median([r["wall"] for r in res[k]])
                print("cryo restore %-26s %-10s  ratio to read %.2f, cryo / it %.2f (%.0f MiB huge)"
                      % (what, fmt_s(m), m / rd, cryo / m, median([r["huge_mib"] for r in res[k]])))
                print("all %s raw: %s" % (k, ", ".join("%.3f" % r["wall"] for r in res[k])))
        print("cryo restore peak RSS (info)           median %.1f MiB"
              % median([r["rss_kib"] / 1024.0 for r in res["cryo"]]))
        if max(busy_list) > 0.15:
            print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
                  % (max(busy_list) * 100))
        print("all cryo raw: %s" % ", ".join("%.3f" % r["wall"] for r in res["cryo"]))
        print("all read raw: %s" % ", ".join("%.3f" % r["wall"] for r in res["read"]))
        benchlib.rmtree(img)  # free the page cache and disk before part 2
        print()

    if args.trivial_runs > 0:
        print("restore of a trivial process (memtouch 0 MiB): 1 warm-up + %d timed runs" % args.trivial_runs)
        pid, ctl, img = dump_once(b, 0, "img-trivial")
        busy = benchlib.wait_quiet(args.quiet_wait)
        walls, tots = [], []
        for i in range(1 + args.trivial_runs):
            r = restore_round(b, pid, ctl, img, logdir, "trivial-%02d" % i)
            if i > 0:
                walls.append(r["wall"])
                if r["total_ms"] is not None:
                    tots.append(r["total_ms"] / 1e3)
        s = sorted(walls)
        print("== bench_restore: trivial process, %d runs (cpu %.0f%% busy before) ==" % (len(walls), busy * 100))
        print("cryo restore -d (wall)   median %s  min %s  max %s   target < %.0f ms  %s"
              % (fmt_s(median(walls)), fmt_s(s[0]), fmt_s(s[-1]), TRIVIAL_TARGET_S * 1e3,
                 "OK" if median(walls) < TRIVIAL_TARGET_S else "MISSED"))
        if tots:
            print("  cryo's own total (log) median %s" % fmt_s(median(tots)))
        print("all raw (ms): %s" % ", ".join("%.2f" % (w * 1e3) for w in walls))
    return 0


def main():
    # No warming by default: the read() baseline is the same with and without
    # it, and cryo's 2-thread fill is steadier without (README, "Warm memory").
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--mib", type=int, default=1024, help="MiB of touched memory in the big image (default 1024; 0 skips)")
    ap.add_argument("--runs", type=int, default=7, help="timed rounds for the big image (default 7, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--chunk-mib", type=int, default=64, help="baseline read() size in MiB (default 64)")
    ap.add_argument("--huge", nargs="?", const="advice", choices=["advice", "collapse"],
                    help="the big image's memory in transparent huge pages (by MADV_HUGEPAGE, or by MADV_COLLAPSE "
                         "without it); also time a small-page restore")
    ap.add_argument("--baseline", help="another cryo binary whose restore is timed too (interleaved)")
    ap.add_argument("--trivial-runs", type=int, default=20, help="timed trivial restores (default 20; 0 skips)")
    args = ap.parse_args()
    if args.mib > 0 and args.runs < 5:
        ap.error("--runs must be at least 5")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
