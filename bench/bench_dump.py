#!/usr/bin/env python3
"""bench_dump: `cryo dump` of processes with touched anonymous memory (256 MiB
and 1 GiB by default) in every durability mode, and `cryo restore` of the
result, against plain-I/O floors measured in the same run.

Steps of one round, for each size (order rotated between rounds, after
--warmup untimed rounds):
  kill        start memtouch (every page written), delete the previous
              image, sync, then time `cryo dump -t PID -D DIR` (kill mode:
              the image is fsynced before the kill) from spawn to exit;
              cryo's peak RSS from wait4 (ru_maxrss).
  restore     then `cryo restore -D DIR -d` of that image, timed spawn to
              exit; untimed, memtouch checks every page (--no-verify skips).
  no-sync     the same dump with --no-sync (nothing fsynced).
  leave-run   the same dump with --leave-running: the freeze ("frozen N ms"
              on cryo's success line: seize until the tree runs again, before
              the image is synced) and the wall time.
  write+fsync baseline_io writes as many bytes as the image into the images
              directory (64 MiB write() calls), fsyncs the file and the
              directory (timed in C).
  write       the same without the fsyncs.
  read        baseline_io reads the kill-mode image's pages file (in the page
              cache) into fresh, untouched memory (timed in C).
With --baseline-cryo PATH, another build of cryo (say main before a change)
runs the kill-mode and leave-running dumps too, interleaved in the same
rounds (base-kill, base-leave-run), and the summary prints its medians and
the ratios of this build's to them.
With --cow-pair only the leave-running dump is timed, copy-on-write (the
default) against --no-cow (leave-run-nocow), each build's ratio of the two
printed with cryo's CPU time (user + system, from wait4), which a loaded
machine skews less than the wall time.
With --other PATH, another checkpoint tool's ordinary command lines are timed
in the same rounds: `PATH dump -t PID -D DIR` followed by sync(1) (equal
durability), the same dump alone, and `PATH restore -D DIR -d`. cryo itself
never runs another checkpointer; this is only for comparison.

Nothing is dropped from the page cache; `sync` before each timed step only
makes sure the previous step's writeback is not billed to the next one.
Right before each timed step --warm-mib MiB of anonymous memory is touched
and freed (README: "Warm memory").

Prints, per size, the medians, the ratios against the floors (issue 13's
targets: kill <= 1.1 x write+fsync, no-sync <= 1.1 x write, leave-running
freeze <= 0.5 x kill, restore against read), and cryo's peak RSS (target
<= 16 MiB).  Exit status 0 when the runs succeeded (targets missed are
reported, not failed), 1 if a run failed, 2 on bad setup.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

KILL_TARGET = 1.1      # kill-mode dump / (write + fsync)
NO_SYNC_TARGET = 1.1   # --no-sync dump / write
FREEZE_TARGET = 0.5    # leave-running freeze / kill-mode dump
RSS_TARGET_MIB = 16
FROZEN_RE = re.compile(r"frozen ([0-9]+) ms")


def start(b, mib, img):
    pid, ctl, _ = b.start_memtouch(mib)
    benchlib.rmtree(img)
    os.sync()
    b.warm()
    return pid, ctl


def restore_and_verify(b, args, pid, ctl, img, logdir, tag, timed):
    """Restores img (timed if `timed`), verifies, kills; returns the wall time."""
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    b.tracked.add(pid)
    if timed:
        os.sync()
        b.warm()
    wall, _ = b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile],
                             os.path.join(logdir, "restore-%s.log" % tag))
    b.wait_running(pid)
    if args.verify:
        b.verify(pid, ctl)
    b.kill(pid)
    return wall


def cryo_dump(b, args, mib, mode, img, logdir, tag):
    """mode: kill, no-sync or leave-run. Returns a dict of figures."""
    pid, ctl = start(b, mib, img)
    log = os.path.join(logdir, "dump-%s-%s.log" % (mode, tag))
    argv = ["dump", "-t", str(pid), "-D", img]
    argv += {"kill": [], "no-sync": ["--no-sync"], "leave-run": ["-R"], "leave-run-nocow": ["-R", "--no-cow"]}[mode]
    rc, wall, rss_kib, err = b.run_cryo(argv, log)
    if rc != 0:
        b.cryo_or_fail(argv, log)  # raises with the details (cryo failed again)
    m = FROZEN_RE.search(err)
    if not m:
        raise BenchError("no 'frozen N ms' on cryo's success line: %r" % err)
    out = {"wall": wall, "rss_kib": rss_kib, "frozen": int(m.group(1)) / 1e3,
           "bytes": benchlib.dir_bytes(img), "pid": pid}
    if mode.startswith("leave-run"):
        out["cpu"] = cpu_seconds(log)
        if not benchlib.pid_alive(pid):
            raise BenchError("pid %d is not running after cryo dump -R" % pid)
        b.kill(pid)
    else:
        b.reap(pid, timeout=10.0)
    if mode == "kill":
        out["restore"] = restore_and_verify(b, args, pid, ctl, img, logdir, tag, timed=True)
    elif args.verify and mode == "no-sync":
        restore_and_verify(b, args, pid, ctl, img, logdir, tag + "-nosync", timed=False)
    return out


def other_dump(b, args, mib, img, logdir, tag, sync):
    """The other tool: dump (kill mode), then sync(1) if `sync`; restore."""
    pid, ctl = start(b, mib, img)
    os.makedirs(img, 0o700, exist_ok=True)
    argv = [args.other, "dump", "-t", str(pid), "-D", img] + args.other_arg
    with open(os.path.join(logdir, "other-%s.err" % tag), "wb") as err:
        t0 = time.monotonic()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=300, close_fds=True)
        if r.returncode == 0 and sync:
            subprocess.run(["sync"], timeout=300)
        wall = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError("%s failed (status %d), see %s" % (" ".join(argv), r.returncode, err.name))
    b.reap(pid, timeout=10.0)
    out = {"wall": wall}
    if sync:
        b.tracked.add(pid)
        os.sync()
        b.warm()
        argv = [args.other, "restore", "-D", img, "-d"] + args.other_arg
        t0 = time.monotonic()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, close_fds=True)
        out["restore"] = time.monotonic() - t0
        if r.returncode != 0:
            raise BenchError("%s failed (status %d): %s" % (" ".join(argv), r.returncode, r.stderr[-2000:]))
        b.wait_running(pid)
        if args.verify:
            b.verify(pid, ctl)
        b.kill(pid)
    return out


def write_floor(b, args, nbytes, img, fsync):
    def prepare():
        benchlib.rmtree(img)
        os.makedirs(img, 0o700)
        os.sync()
        b.warm()

    argv = ["write", os.path.join(img, "baseline.bin"), str(nbytes), "--chunk-mib", str(args.chunk_mib)]
    if not fsync:
        argv.append("--no-fsync")
    kv = b.run_baseline_staged(argv, prepare)
    return {"wall": float(kv["seconds"])}


def read_floor(b, args, pages):
    b.warm()
    kv = b.run_baseline(["read", pages, "--chunk-mib", str(args.chunk_mib)])
    if float(kv["resident"]) < 0.99:
        print("WARNING: only %.1f%% of %s was in the page cache" % (float(kv["resident"]) * 100, pages))
    return {"wall": float(kv["seconds"])}


def cpu_seconds(log):
    """user + system CPU seconds of the cryo run (baseline_io rusage's file), or None."""
    try:
        with open(log + ".rusage") as f:
            for line in f:
                if line.startswith("cpu_s="):
                    return float(line[len("cpu_s="):])
    except (OSError, ValueError):
        pass
    return None


def one_size(b, args, mib, logdir, busy_list):
    img = b.path("img-%d" % mib)
    kimg = b.path("kill-img-%d" % mib)  # the kill-mode image, kept for the read floor
    if args.cow_pair:
        nbytes, pages = 0, None
        steps = ["leave-run", "leave-run-nocow"]
    else:
        first = cryo_dump(b, args, mib, "kill", kimg, logdir, "%d-sizing" % mib)
        nbytes = first["bytes"]
        pages = os.path.join(kimg, "pages-%d.img" % first["pid"])
        steps = ["kill", "no-sync", "leave-run", "write+fsync", "write", "read"]
    if args.other:
        steps += ["other+sync", "other"]
    if args.baseline_cryo:
        steps += ["base-leave-run", "base-leave-run-nocow"] if args.cow_pair else ["base-kill", "base-leave-run"]
    res = {k: [] for k in steps}
    for i in range(args.warmup + args.runs):
        timed = i >= args.warmup
        busy = benchlib.wait_quiet(args.quiet_wait)
        if timed:
            busy_list.append(busy)
        line = []
        for k in steps[i % len(steps):] + steps[:i % len(steps)]:
            tag = "%d-%02d" % (mib, i)
            if k in ("kill", "no-sync", "leave-run", "leave-run-nocow"):
                r = cryo_dump(b, args, mib, k, kimg if k == "kill" else img, logdir, tag)
                if k == "kill":
                    pages = os.path.join(kimg, "pages-%d.img" % r["pid"])
            elif k.startswith("base-"):
                own, b.cryo = b.cryo, args.baseline_cryo
                try:
                    r = cryo_dump(b, args, mib, k[len("base-"):], b.path("base-img-%d" % mib), logdir, tag + "-base")
                finally:
                    b.cryo = own
            elif k.startswith("write"):
                r = write_floor(b, args, nbytes, img, k == "write+fsync")
            elif k == "read":
                r = read_floor(b, args, pages)
            else:
                r = other_dump(b, args, mib, img, logdir, tag, k == "other+sync")
            if timed:
                res[k].append(r)
            extra = ""
            if k.endswith("leave-run"):
                extra = " (frozen %s)" % fmt_s(r["frozen"])
            if "restore" in r:
                extra += " (restore %s)" % fmt_s(r["restore"])
            if "rss_kib" in r:
                extra += " rss %.1f MiB" % (r["rss_kib"] / 1024.0)
            line.append("%s %s%s" % (k, fmt_s(r["wall"]), extra))
        print("%d MiB %s %d (cpu %2.0f%% busy before): %s"
              % (mib, "run" if timed else "warm-up", i - args.warmup + 1 if timed else i + 1, busy * 100,
                 "; ".join(line)))
        sys.stdout.flush()
    return nbytes, res


def report_cow_pair(mib, res, runs):
    """--cow-pair: the leave-running dump with copy-on-write against --no-cow."""
    print()
    print("== bench_dump --cow-pair: %d MiB, medians of %d runs ==" % (mib, runs))
    for prefix in ("", "base-"):
        if prefix + "leave-run" not in res:
            continue
        cow, nocow = res[prefix + "leave-run"], res[prefix + "leave-run-nocow"]
        wc, wn = median([r["wall"] for r in cow]), median([r["wall"] for r in nocow])
        fc, fn = median([r["frozen"] for r in cow]), median([r["frozen"] for r in nocow])
        who = "baseline" if prefix else "cryo"
        print("%-8s -R wall %-9s --no-cow %-9s ratio %.2f (target <= 1.1); frozen %s against %s (%.2f)"
              % (who, fmt_s(wc), fmt_s(wn), wc / wn, fmt_s(fc), fmt_s(fn), fc / fn))
        cc = [r["cpu"] for r in cow if r.get("cpu") is not None]
        cn = [r["cpu"] for r in nocow if r.get("cpu") is not None]
        if cc and cn:
            print("%-8s -R cpu  %-9s --no-cow %-9s ratio %.2f" % (who, fmt_s(median(cc)), fmt_s(median(cn)),
                                                                median(cc) / median(cn)))
    for k, v in res.items():
        print("  raw %-20s %s" % (k, ", ".join("%.3f" % r["wall"] for r in v)))
        print("  raw %-20s %s" % (k + " frozen", ", ".join("%.3f" % r["frozen"] for r in v)))


def report(mib, nbytes, res, runs):
    med = {k: median([r["wall"] for r in v]) for k, v in res.items()}
    kill, wf, wn, rd = med["kill"], med["write+fsync"], med["write"], med["read"]
    freeze = median([r["frozen"] for r in res["leave-run"]])
    restore = median([r["restore"] for r in res["kill"]])
    rss = [r["rss_kib"] / 1024.0 for k in ("kill", "no-sync", "leave-run") for r in res[k]]
    gib = nbytes / 2**30

    def verdict(x, target):
        return "OK" if x <= target else "MISSED"

    print()
    print("== bench_dump: %d MiB (image %.1f MiB), medians of %d runs ==" % (mib, nbytes / 2**20, runs))
    print("cryo dump, kill mode (fsync)     %-9s %.2f GiB/s  / write+fsync %.2f  target <= %.1f %s"
          % (fmt_s(kill), gib / kill, kill / wf, KILL_TARGET, verdict(kill / wf, KILL_TARGET)))
    print("cryo dump --no-sync              %-9s %.2f GiB/s  / write       %.2f  target <= %.1f %s"
          % (fmt_s(med["no-sync"]), gib / med["no-sync"], med["no-sync"] / wn, NO_SYNC_TARGET,
             verdict(med["no-sync"] / wn, NO_SYNC_TARGET)))
    print("cryo dump --leave-running        %-9s (wall; fsync after the resume)" % fmt_s(med["leave-run"]))
    print("  frozen                         %-9s             / kill dump   %.2f  target <= %.1f %s"
          % (fmt_s(freeze), freeze / kill, FREEZE_TARGET, verdict(freeze / kill, FREEZE_TARGET)))
    print("cryo restore -d                  %-9s %.2f GiB/s  / read        %.2f"
          % (fmt_s(restore), gib / restore, restore / rd))
    print("floor write()+fsync              %-9s %.2f GiB/s" % (fmt_s(wf), gib / wf))
    print("floor write()                    %-9s %.2f GiB/s" % (fmt_s(wn), gib / wn))
    print("floor read() into fresh memory   %-9s %.2f GiB/s" % (fmt_s(rd), gib / rd))
    print("cryo dump peak RSS (ru_maxrss)   median %.1f MiB, max %.1f MiB  target <= %d MiB %s"
          % (median(rss), max(rss), RSS_TARGET_MIB, verdict(max(rss), RSS_TARGET_MIB)))
    if "other" in med:
        other_restore = median([r["restore"] for r in res["other+sync"]])
        print("other: dump + sync               %-9s cryo kill / it   %.2f" % (fmt_s(med["other+sync"]),
                                                                              kill / med["other+sync"]))
        print("other: dump                      %-9s cryo no-sync / it %.2f" % (fmt_s(med["other"]),
                                                                               med["no-sync"] / med["other"]))
        print("other: restore -d                %-9s cryo / it        %.2f" % (fmt_s(other_restore),
                                                                              restore / other_restore))
    if "base-kill" in med:
        bkill, bleave = med["base-kill"], med["base-leave-run"]
        bfreeze = median([r["frozen"] for r in res["base-leave-run"]])
        print("baseline: kill-mode dump         %-9s cryo / it        %.2f" % (fmt_s(bkill), kill / bkill))
        print("baseline: --leave-running        %-9s cryo / it        %.2f" % (fmt_s(bleave),
                                                                              med["leave-run"] / bleave))
        print("baseline:   frozen               %-9s cryo / it        %.2f;  it / its kill dump %.2f"
              % (fmt_s(bfreeze), freeze / bfreeze, bfreeze / bkill))
    for k, v in res.items():
        print("  raw %-12s %s" % (k, ", ".join("%.3f" % r["wall"] for r in v)))
        if k.endswith("leave-run"):
            print("  raw %-12s %s" % (k + " frozen", ", ".join("%.3f" % r["frozen"] for r in v)))


def body(b):
    args = b.args
    logdir = b.fresh_dir("logs")
    b.baseline_io()
    print("dump and restore of %s MiB touched anonymous memory; %d warm-up + %d timed rounds; "
          "%d MiB warmed before each timed step%s"
          % (",".join(map(str, args.sizes)), args.warmup, args.runs, args.warm_mib,
             "; other tool: %s" % args.other if args.other else ""))
    busy_list = []
    results = [(mib,) + one_size(b, args, mib, logdir, busy_list) for mib in args.sizes]
    for mib, nbytes, res in results:
        if args.cow_pair:
            report_cow_pair(mib, res, args.runs)
        else:
            report(mib, nbytes, res, args.runs)
    if busy_list and max(busy_list) > 0.15:
        print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
              % (max(busy_list) * 100))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024",
                    help="MiB of touched anonymous memory, comma-separated (default 256,1024; e.g. 256,1024,4096)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--chunk-mib", type=int, default=64, help="baseline write()/read() size in MiB (default 64)")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="do not have memtouch check its pages after each restore")
    ap.add_argument("--cow-pair", action="store_true",
                    help="time only the leave-running dump, copy-on-write against --no-cow (and the baseline's "
                         "two), with cryo's CPU time (user + system)")
    ap.add_argument("--baseline-cryo", metavar="PATH",
                    help="another cryo build whose kill-mode and leave-running dumps are timed in the same rounds")
    ap.add_argument("--other", metavar="PATH", help="another checkpoint tool to time with the same command lines")
    ap.add_argument("--other-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for each of the other tool's commands (repeatable)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x]
    except ValueError:
        ap.error("--sizes: a comma-separated list of MiB")
    if not args.sizes or min(args.sizes) <= 0:
        ap.error("--sizes: sizes must be positive")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
