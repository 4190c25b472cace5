#!/usr/bin/env python3
"""bench_precopy: downtime of `cryo migrate` over loopback with and without
--pre-copy, side by side in the same run.

The workload is tests/workloads/dirtier (1 GiB by default, writing 10 MiB/s
round its pages). Each round migrates it with `cryo migrate -t PID --to ADDR
--insecure [--pre-copy]` into a fresh `cryo page-server --restore` (port 0);
the restored process is the next round's original (the modes alternate).
Measured per migration:
  - downtime: the longest pause of the workload's own loop since its
    previous check (its maxgap_ms, CLOCK_MONOTONIC, which one machine keeps
    across the move; its last pause, lastgap_ms, is a later slow turn when
    there is one, not the downtime): from its last
    turn before the freeze to its first turn after the restore, so freeze to
    resume plus at most one turn of its loop (2 ms);
  - frozen at the source: cryo's "frozen X ms" of the final dump (seize to
    kill, the image acknowledged by the receiver);
  - total: spawn to exit of cryo migrate;
  - per pre-copy round (its line "pre-copy round N: ..."): the frozen time
    (seize to resume) and the copy made once the tree ran again, for round
    0 (all of the memory) and the most frozen of the later rounds.
Each migration is verified by the workload (every page against its counter).
Prints medians.

With "lazy" among --modes (the default has it), each round also migrates a
fresh dirtier post-copy: `cryo migrate --lazy` into `cryo page-server
--restore --pidns new` (the frozen original keeps its pids until every page
is in). Its downtime is measured the same way (maxgap_ms: from the last turn
before the freeze to the first turn on the target, its first touches served
over the link); "all in" is the page server's lazy report (the tree's first
adoption to the last page), "frozen" is not meaningful there (the source
stays frozen, serving, until every page is in).

Exit status 0 when every run succeeded, 1 if one failed, 2 on bad setup.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, median  # noqa: E402
from bench_stream import page_server  # noqa: E402

GAP_RE = re.compile(r"maxgap_ms=([\d.]+)")
FROZEN_RE = re.compile(r"frozen ([\d.]+) ms")
ROUNDS_RE = re.compile(r"pre-copy final round \((\d+) round")
ROUND_RE = re.compile(r"pre-copy round (\d+): .* frozen ([\d.]+) ms(?:, copied ([\d.]+) ms while the tree ran)?")


def reap_zombie(b, pid, deadline):
    """The killed original: reaped so that its pid comes free for the restore."""
    while time.monotonic() < deadline:
        st = benchlib.proc_stat(pid)
        if st is None:
            return
        if st["state"] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.002)


def one(b, pid, ctl, pre_copy):
    images = os.path.join(b.fresh_dir("recv"), "img")
    srv, addr, err = page_server(b, images, ["--insecure", "--restore"])
    argv = [b.cryo, "migrate", "-t", str(pid), "--to", addr, "--insecure", "-v"] + (["--pre-copy"] if pre_copy else [])
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, close_fds=True)
    # The original dies once the image is safe on the receiver; its pid must
    # come free while migrate waits for the restore.
    b.popens.pop(pid, None)
    deadline = t0 + 600
    while p.poll() is None and time.monotonic() < deadline:
        st = benchlib.proc_stat(pid)
        if st is not None and st["state"] == "Z" and st["ppid"] == os.getpid():
            reap_zombie(b, pid, deadline)
        time.sleep(0.002)
    _, stderr = p.communicate(timeout=60)
    secs = time.monotonic() - t0
    srv.wait(timeout=60)
    if p.returncode != 0 or srv.returncode != 0:
        raise BenchError("migrate%s failed: %s %s" % (" --pre-copy" if pre_copy else "", stderr,
                                                      benchlib.read_text(err, "")))
    b.tracked.add(pid)
    b.wait_running(pid)
    line = b.verify(pid, ctl)
    gap = float(GAP_RE.search(line).group(1))
    frozen = [float(x) for x in FROZEN_RE.findall(stderr)]
    rounds = ROUNDS_RE.search(stderr)
    benchlib.rmtree(os.path.dirname(images))
    per_round = {int(m.group(1)): (float(m.group(2)), float(m.group(3) or 0)) for m in ROUND_RE.finditer(stderr)}
    r0 = per_round.get(0, (float("nan"), float("nan")))
    later = max([f for n, (f, _) in per_round.items() if n > 0] or [float("nan")])
    return (gap, frozen[-1] if frozen else float("nan"), secs, int(rounds.group(1)) if rounds else 0,
            r0[0], r0[1], later)


LAZY_RE = re.compile(r"lazy restore: (\d+) pages .* in ([\d.]+) s: (\d+) on first touch, (\d+) prefetched")


def one_lazy(b, dirtier):
    """A fresh dirtier migrated post-copy (--lazy) into a new PID namespace:
    (downtime ms, all-in s, total s, pages on first touch)."""
    a = b.args
    pid, ctl, _ = b.start_ready(lambda c: [dirtier, c, str(a.mib), str(a.rate)], "dirtier %d MiB" % a.mib, 300)
    images = os.path.join(b.fresh_dir("recv"), "img")
    pidfile = os.path.join(os.path.dirname(images), "restored.pid")
    logs = []
    if a.log_dir:
        # --log-file on both cryo processes (the phases, with times).
        n = len(os.listdir(a.log_dir)) // 2
        logs = [os.path.join(a.log_dir, "%03d-%s.log" % (n, side)) for side in ("source", "target")]
    srv, addr, err = page_server(b, images, ["--insecure", "--restore", "--pidns", "new", "--pidfile", pidfile] +
                                 (["--log-file", logs[1]] if logs else []))
    argv = [b.cryo, "migrate", "-t", str(pid), "--to", addr, "--insecure", "-v", "--lazy"] + \
        (["--log-file", logs[0]] if logs else [])
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, close_fds=True)
    _, stderr = p.communicate(timeout=600)
    secs = time.monotonic() - t0
    srv.wait(timeout=60)
    serr = benchlib.read_text(err, "") or ""
    if p.returncode != 0 or srv.returncode != 0:
        raise BenchError("migrate --lazy failed: %s %s" % (stderr, serr))
    b.wait_gone([pid], timeout=30)  # the original, killed once every page was in
    restored = int((benchlib.read_text(pidfile, "") or "0").strip())
    if restored <= 0:
        raise BenchError("page-server --restore --pidns new wrote no pid: %s" % serr)
    b.tracked.add(restored)
    line = b.verify(restored, ctl)
    gap = float(GAP_RE.search(line).group(1))
    lazy = LAZY_RE.search(serr)
    b.kill(restored)
    b.reap_stray_zombies()
    benchlib.rmtree(os.path.dirname(images))
    return gap, float(lazy.group(2)) if lazy else float("nan"), secs, int(lazy.group(3)) if lazy else 0


def body(b):
    a = b.args
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in ("plain", "pre-copy", "lazy") for m in modes):
        raise BenchError("--modes: plain, pre-copy, lazy")
    dirtier = benchlib.find_binary(a.dirtier, "tests/workloads/dirtier", "dirtier")
    eager = [m == "pre-copy" for m in modes if m != "lazy"]
    if eager:
        pid, ctl, _ = b.start_ready(lambda c: [dirtier, c, str(a.mib), str(a.rate)], "dirtier %d MiB" % a.mib, 300)
    results = {False: [], True: []}
    lazy_results = []
    for rnd in range(a.rounds):
        print("round %d/%d (cpu busy %.0f%%)" % (rnd + 1, a.rounds, 100 * benchlib.wait_quiet(a.quiet_wait)))
        sys.stdout.flush()
        for pre_copy in (eager if rnd % 2 == 0 else eager[::-1]):
            r = one(b, pid, ctl, pre_copy)
            print("  %-9s downtime %7.1f ms, frozen %7.1f ms, total %6.2f s, %d rounds%s"
                  % ("pre-copy" if pre_copy else "plain", r[0], r[1], r[2], r[3],
                     "; round 0 frozen %.1f ms + copied %.1f ms running, later rounds frozen <= %.1f ms"
                     % (r[4], r[5], r[6]) if pre_copy else ""))
            sys.stdout.flush()
            results[pre_copy].append(r)
        if "lazy" in modes:
            r = one_lazy(b, dirtier)
            print("  %-9s downtime %7.1f ms, all in %6.2f s, total %6.2f s, %d pages on first touch"
                  % ("lazy", r[0], r[1], r[2], r[3]))
            sys.stdout.flush()
            lazy_results.append(r)
    print("\ndirtier %d MiB writing %g MiB/s, cryo migrate over 127.0.0.1 (--insecure), medians of %d"
          % (a.mib, a.rate, a.rounds))
    print("%-9s %14s %18s %10s %7s" % ("mode", "downtime ms", "frozen (source) ms", "total s", "rounds"))
    for pre_copy in sorted(set(eager)):
        rs = results[pre_copy]
        print("%-9s %14.1f %18.1f %10.2f %7.0f" % ("pre-copy" if pre_copy else "plain", median([r[0] for r in rs]),
                                                  median([r[1] for r in rs]), median([r[2] for r in rs]),
                                                  median([r[3] for r in rs])))
    if True in results and results[True]:
        rs = results[True]
        print("pre-copy rounds: round 0 frozen %.1f ms, copied %.1f ms while the tree ran; later rounds frozen at "
              "most %.1f ms" % (median([r[4] for r in rs]), median([r[5] for r in rs]), median([r[6] for r in rs])))
    if lazy_results:
        rs = lazy_results
        print("%-9s %14.1f %18s %10.2f %7s   (all in %.2f s after the restore, %d pages on first touch)"
              % ("lazy", median([r[0] for r in rs]), "-", median([r[2] for r in rs]), "-",
                 median([r[1] for r in rs]), median([r[3] for r in rs])))
    return 0


def main():
    ap = benchlib.common_args(__doc__, warm_mib=0)
    ap.add_argument("--dirtier", help="dirtier binary (default: build-bench/ or build/ tests/workloads/dirtier)")
    ap.add_argument("--mib", type=int, default=1024, help="dirtier size (default 1024)")
    ap.add_argument("--rate", type=float, default=10, help="MiB/s it writes (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="migrations per mode (default 5)")
    ap.add_argument("--log-dir", help="lazy mode: --log-file of both cryo processes into this directory")
    ap.add_argument("--modes", default="plain,pre-copy,lazy",
                    help="comma-separated: plain, pre-copy, lazy (post-copy, migrate --lazy) (default all three)")
    args = ap.parse_args()
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
