#!/usr/bin/env python3
"""bench_dump: `cryo dump` of a process with 1 GiB of touched anonymous memory
against writing the same number of bytes with plain write() calls.

Each round (order rotated between rounds, after --warmup untimed rounds):
  cryo        start memtouch with --mib MiB (every page written), delete the
              previous image, sync, then time `cryo dump -t PID -D DIR` (kill
              mode unless --leave-running) from spawn to exit; record cryo's
              peak RSS (ru_maxrss from wait4).  Afterwards (untimed) the image
              is restored and memtouch checks every page (--no-verify skips).
  write+fsync baseline_io fills an in-memory buffer with as many bytes as the
              image; then DIR (the previous round's output) is deleted,
              recreated and synced; then baseline_io writes the buffer to
              DIR/baseline.bin with 64 MiB write() calls, fsyncs the file and
              DIR, and closes it (timed inside the helper, in C).
  write       the same without the fsyncs (information only: page-cache speed).

Nothing is dropped from the page cache; `sync` before each timed step only
makes sure the previous round's writeback is not billed to the next one.
Right before each timed step (cryo and baselines alike) --warm-mib MiB of
anonymous memory is touched and freed (see README: on these firecracker VMs
memory freed a few seconds earlier has been handed back to the host and costs
a host fault per page on its next use, which otherwise makes whichever step
follows a long one up to 5x slower).  --warm-mib 0 disables it.

Prints the medians, cryo/write+fsync (target <= 1.2) and cryo's peak RSS
(target < 64 MiB).  Exit status 0 when the runs succeeded (targets missed are
reported, not failed), 1 if a run failed, 2 on bad setup.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

RATIO_TARGET = 1.2
RSS_TARGET_MIB = 64


def cryo_round(b, args, img, logdir, tag):
    pid, ctl, fill_s = b.start_memtouch(args.mib)
    benchlib.rmtree(img)
    os.sync()
    b.warm()
    log = os.path.join(logdir, "dump-%s.log" % tag)
    argv = ["dump", "-t", str(pid), "-D", img]
    if args.leave_running:
        argv.append("-R")
    wall, rss_kib = b.cryo_or_fail(argv, log)
    image_bytes = benchlib.dir_bytes(img)
    pages_ms = benchlib.log_ms(log, r"pages written(?: and synced)? in ([\d.]+) ms")
    seize_ms = benchlib.log_ms(log, r"seized in ([\d.]+) ms")
    total_ms = benchlib.log_ms(log, r"dumped to .* in ([\d.]+) ms")
    if args.leave_running:
        if not benchlib.pid_alive(pid):
            raise BenchError("pid %d is not running after cryo dump -R" % pid)
    else:
        # kill mode: cryo killed it once the image was synced; reap our child
        b.reap(pid, timeout=10.0)
    b.kill(pid)  # leave-running: done with it now; kill mode: no-op
    verdict = "not verified"
    if args.verify:
        rlog = os.path.join(logdir, "verify-restore-%s.log" % tag)
        pidfile = os.path.join(logdir, "verify-restore-%s.pid" % tag)
        b.tracked.add(pid)
        b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile], rlog)
        b.wait_running(pid)
        verdict = b.verify(pid, ctl)
        b.kill(pid)
    return {"wall": wall, "rss_kib": rss_kib, "bytes": image_bytes, "pages_ms": pages_ms,
            "seize_ms": seize_ms, "total_ms": total_ms, "fill_s": fill_s, "verify": verdict}


def write_round(b, args, img, fsync):
    # Same sequence as cryo_round: the source buffer is filled first, then the
    # previous round's output is deleted and the file system synced, then the
    # timed part runs.
    def prepare():
        benchlib.rmtree(img)
        os.makedirs(img, 0o700)
        os.sync()
        b.warm()

    argv = ["write", os.path.join(img, "baseline.bin"), str(args.bytes), "--chunk-mib", str(args.chunk_mib)]
    if not fsync:
        argv.append("--no-fsync")
    kv = b.run_baseline_staged(argv, prepare)
    return {"wall": float(kv["seconds"]), "write_only": float(kv["write_seconds"])}


def body(b):
    args = b.args
    img = b.path("img")  # one directory for cryo's image and the baseline file
    logdir = b.fresh_dir("logs")
    b.baseline_io()
    print("dump of %d MiB touched anonymous memory; %d warm-up + %d timed rounds; mode %s; "
          "%d MiB warmed before each timed step"
          % (args.mib, args.warmup, args.runs, "leave-running" if args.leave_running else "kill",
             args.warm_mib))

    # The first cryo dump tells how many bytes the baseline must write.
    first = cryo_round(b, args, img, logdir, "sizing")
    args.bytes = first["bytes"]
    print("image size %d bytes (%.1f MiB); baseline writes the same number of bytes"
          % (args.bytes, args.bytes / 2**20))

    kinds = ["cryo", "write+fsync", "write"]
    res = {k: [] for k in kinds}
    busy_list = []
    total = args.warmup + args.runs
    for i in range(total):
        timed = i >= args.warmup
        order = kinds[i % 3:] + kinds[:i % 3]
        busy = benchlib.wait_quiet(args.quiet_wait)
        if timed:
            busy_list.append(busy)
        line = []
        for k in order:
            if k == "cryo":
                r = cryo_round(b, args, img, logdir, "%02d" % i)
            else:
                r = write_round(b, args, img, fsync=(k == "write+fsync"))
            if timed:
                res[k].append(r)
            extra = ""
            if k == "write+fsync":
                extra = " (write() part %s)" % fmt_s(r["write_only"])
            if k == "cryo":
                extra = " rss %.1f MiB, pages phase %s, %s" % (
                    r["rss_kib"] / 1024.0, "%.0f ms" % r["pages_ms"] if r["pages_ms"] else "?", r["verify"])
            line.append("%s %s%s" % (k, fmt_s(r["wall"]), extra))
        print("%s %d (cpu %2.0f%% busy before): %s" % ("run" if timed else "warm-up",
                                                       i - args.warmup + 1 if timed else i + 1,
                                                       busy * 100, "; ".join(line)))
        sys.stdout.flush()

    cryo = median([r["wall"] for r in res["cryo"]])
    wf = median([r["wall"] for r in res["write+fsync"]])
    wn = median([r["wall"] for r in res["write"]])
    wf_write = median([r["write_only"] for r in res["write+fsync"]])
    rss = [r["rss_kib"] / 1024.0 for r in res["cryo"]]
    pages = [r["pages_ms"] / 1e3 for r in res["cryo"] if r["pages_ms"] is not None]
    tot = [r["total_ms"] / 1e3 for r in res["cryo"] if r["total_ms"] is not None]
    ratio = cryo / wf
    gib = args.bytes / 2**30
    print()
    print("== bench_dump: %d MiB, medians of %d runs ==" % (args.mib, args.runs))
    print("cryo dump (wall, spawn to exit)      %-10s  %.2f GiB/s" % (fmt_s(cryo), gib / cryo))
    if pages:
        print("  of which pages written            %-10s  (cryo log; fsynced with the other files after)" % fmt_s(median(pages)))
        print("  cryo's own total (log)            %-10s" % fmt_s(median(tot)))
    print("write()+fsync baseline               %-10s  %.2f GiB/s  (write() part %s)"
          % (fmt_s(wf), gib / wf, fmt_s(wf_write)))
    print("write() without fsync (info)         %-10s  %.2f GiB/s" % (fmt_s(wn), gib / wn))
    print("ratio cryo / (write+fsync)           %.2f   target <= %.1f  %s"
          % (ratio, RATIO_TARGET, "OK" if ratio <= RATIO_TARGET else "MISSED"))
    print("ratio cryo / write (no fsync, info)  %.2f" % (cryo / wn))
    print("cryo peak RSS                        median %.1f MiB, max %.1f MiB   target < %d MiB  %s"
          % (median(rss), max(rss), RSS_TARGET_MIB, "OK" if max(rss) < RSS_TARGET_MIB else "MISSED"))
    if max(busy_list) > 0.15:
        print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
              % (max(busy_list) * 100))
    print("all cryo raw walls: %s" % ", ".join("%.3f" % r["wall"] for r in res["cryo"]))
    print("all write+fsync raw: %s" % ", ".join("%.3f" % r["wall"] for r in res["write+fsync"]))
    print("all write raw: %s" % ", ".join("%.3f" % r["wall"] for r in res["write"]))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="MiB of touched anonymous memory (default 1024)")
    ap.add_argument("--runs", type=int, default=7, help="timed rounds (default 7, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--chunk-mib", type=int, default=64, help="baseline write() size in MiB (default 64)")
    ap.add_argument("--leave-running", action="store_true", help="dump with -R instead of kill mode")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="do not restore and check each image (saves time)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
