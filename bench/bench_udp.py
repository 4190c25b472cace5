#!/usr/bin/env python3
"""bench_udp: the frozen time of `cryo dump --leave-running` of one process
holding N bound UDP sockets, each with 3 datagrams queued (every queue then
peeked at and counted by the kernel, bpf/udp_queue_count.h), and of the same
process with empty queues (nothing to count).

Each round, after --warmup untimed rounds, dumps both workloads (they run on
between rounds: the datagrams are not empty, so a peek hides none) and reads
the frozen time from cryo's log ("frozen X ms"), and the time the count's
program took to load before the freeze ("UDP queue count ... loaded in X
ms"). The difference between queued and empty queues, per socket: what a
count costs with the tree frozen.

--baseline-cryo OTHER: every round also runs OTHER (an earlier build) right
after the cryo under test: medians of both and their ratio. E.g. the load
of the count's program moved before the freeze: --baseline-cryo a build of
before it.

Exit status 0 when the runs succeeded, 1 if a run failed, 2 on bad setup.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import median  # noqa: E402

WORKLOAD = r"""
import os, socket, sys, time
n, queued = int(sys.argv[1]), sys.argv[2] == "queued"
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    if queued:
        for d in (b"a", b"bb", b"ccc"):
            out.sendto(d, s.getsockname())
time.sleep(0.1)
open("ready.tmp", "w").write(str(os.getpid()))
os.rename("ready.tmp", "ready")
while True:
    time.sleep(1)
"""


def body(b):
    args = b.args
    logdir = b.fresh_dir("logs")
    img = os.path.join(logdir, "img")
    kinds = ("queued", "empty")
    pids = {}
    for kind in kinds:
        pids[kind], _, _ = b.start_ready(lambda c, kind=kind: [sys.executable, "-c", WORKLOAD, str(args.sockets), kind],
                                         "%d UDP sockets (%s)" % (args.sockets, kind))
    cryos = [("", b.cryo)] + ([(" (baseline)", args.baseline_cryo)] if args.baseline_cryo else [])
    frozen = {(label, kind): [] for label, _ in cryos for kind in kinds}
    loads = []
    print("%d UDP sockets; %d warm-up + %d timed rounds" % (args.sockets, args.warmup, args.runs))
    for i in range(args.warmup + args.runs):
        benchlib.wait_quiet(args.quiet_wait)
        line = []
        for kind in kinds:
            for label, cryo in cryos:
                b.cryo = cryo
                log = os.path.join(logdir, "dump-%s-%02d%s.log" % (kind, i, "-base" if label else ""))
                b.cryo_or_fail(["dump", "-t", str(pids[kind]), "-D", img, "-R", "--force"], log)
                ms = benchlib.log_ms(log, r"frozen ([0-9.]+) ms")
                if ms is None:
                    raise benchlib.BenchError("no frozen time in %s" % log)
                load = benchlib.log_ms(log, r"UDP queue count \(BPF iterator\) loaded in ([0-9.]+) ms")
                if i >= args.warmup:
                    frozen[(label, kind)].append(ms)
                    if load is not None and not label:
                        loads.append(load)
                line.append("%s%s: frozen %.1f ms" % (kind, label, ms))
        print("%s %d: %s" % ("run" if i >= args.warmup else "warm-up", i + 1, "; ".join(line)))
        sys.stdout.flush()
    b.cryo = cryos[0][1]
    b.kill_all(list(pids.values()))
    print()
    print("== bench_udp: medians of %d runs ==" % args.runs)
    for label, _ in cryos:
        q, e = median(frozen[(label, "queued")]), median(frozen[(label, "empty")])
        print("frozen%s: queues of 3 datagrams %.1f ms, empty queues %.1f ms: %.3f ms per counted socket"
              % (label, q, e, (q - e) / args.sockets))
    if loads:
        print("the count's program loaded before the freeze in %.1f ms (median)" % median(loads))
    if args.baseline_cryo:
        print("== against the baseline (%s) ==" % args.baseline_cryo)
        for kind in kinds:
            t, base = median(frozen[("", kind)]), median(frozen[(" (baseline)", kind)])
            print("%s queues: frozen %.2fx (%.1f ms -> %.1f ms)" % (kind, t / base, base, t))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--sockets", type=int, default=40, help="UDP sockets in the workload (default 40)")
    ap.add_argument("--runs", type=int, default=7, help="timed rounds (default 7)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--baseline-cryo", help="another cryo binary run interleaved with the one under test")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs: at least 5")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
