#!/usr/bin/env python3
"""bench_tcp: `cryo dump` and `cryo restore` of one process holding N
established loopback TCP connections (both ends in the process, 2N sockets)
with bytes queued, per connection.

The workload (python3) opens N connections to its own listener; on each, both
ends write 1000 bytes the other has not read, so that every connection has a
receive queue (and the dump reads, the restore refills, both queues). Each
round, after --warmup untimed rounds: start it, wait for `ready`, time
`cryo dump -t PID -D DIR` (kill mode: every connection locked, read in repair
mode); reap; time `cryo restore -D DIR --detach` (every connection made again
in repair mode, queues refilled, repair mode off, the lock removed); then,
untimed, the restored process checks that every connection still carries
bytes both ways and holds the bytes queued at the dump, and writes `verified`.
The smaller size is subtracted from the larger one: the marginal time per
connection (goal: at most 30 us each way).

--baseline-cryo OTHER: every round also runs OTHER (an earlier build) right
after the cryo under test, for each size: medians of both and their ratio
(a busy machine slows both alike). E.g. the network lock's cost per
connection: --sizes 1,10,50 --baseline-cryo a build of before one nft
script per dump.

Exit status 0 when the runs succeeded (goals missed are reported, not
failed), 1 if a run failed, 2 on bad setup.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

GOAL_S = 30e-6  # per connection, each way

WORKLOAD = r"""
import os, resource, socket, sys, time
n = int(sys.argv[1])
lim = min(4 * n + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # a hard limit below that: up to ~(lim - 40) / 2
resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1024)
pairs = []
for i in range(n):
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    c.sendall(b"c%07d" % i * 125)
    s.sendall(b"s%07d" % i * 125)
    pairs.append((c, s))
l.close()
time.sleep(0.2)
open("ready.tmp", "w").write(str(os.getpid()))
os.rename("ready.tmp", "ready")
while not os.path.exists("check"):
    time.sleep(0.01)
def recv_exact(sock, k):
    out = b""
    while len(out) < k:
        d = sock.recv(k - len(out))
        if not d:
            raise SystemExit("end of stream")
        out += d
    return out
bad = 0
for i, (c, s) in enumerate(pairs):
    if recv_exact(c, 1000) != b"s%07d" % i * 125 or recv_exact(s, 1000) != b"c%07d" % i * 125:
        bad += 1
    c.sendall(b"x")
    if recv_exact(s, 1) != b"x":
        bad += 1
open("result.tmp", "w").write("verified\n" if bad == 0 else "FAIL: %d connections\n" % bad)
os.rename("result.tmp", "result")
while True:
    time.sleep(1)
"""


def tcp_round(b, n, logdir, tag):
    pid, ctl, _ = b.start_ready(lambda c: [sys.executable, "-c", WORKLOAD, str(n)], "%d connections" % n)
    img = os.path.join(logdir, "img-%s" % tag)
    dump_wall, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], os.path.join(logdir, "dump-%s.log" % tag))
    b.reap(pid, timeout=20.0)
    b.wait_gone([pid])
    time.sleep(0.2)
    b.tracked.add(pid)
    restore_wall, _ = b.cryo_or_fail(["restore", "-D", img, "-d"], os.path.join(logdir, "restore-%s.log" % tag))
    b.wait_running(pid)
    open(os.path.join(ctl, "check"), "w").write("x")
    deadline = time.monotonic() + 60
    result = None
    while time.monotonic() < deadline:
        result = benchlib.read_text(os.path.join(ctl, "result"))
        if result:
            break
        time.sleep(0.02)
    b.kill_all([pid])
    b.wait_gone([pid])
    benchlib.rmtree(img)
    if result != "verified\n":
        raise BenchError("%d connections after the restore: %r" % (n, result))
    return dump_wall, restore_wall


def report(label, res, sizes, runs):
    """Medians per size and the marginal time per connection; the medians."""
    print("== bench_tcp%s: medians of %d runs ==" % (label, runs))
    med = {n: (median([x[0] for x in res[n]]), median([x[1] for x in res[n]])) for n in sizes}
    for n in sizes:
        print("%6d connections: dump %s, restore %s" % (n, fmt_s(med[n][0]), fmt_s(med[n][1])))
    lo, hi = min(sizes), max(sizes)
    if hi > lo:
        d = (med[hi][0] - med[lo][0]) / (hi - lo)
        r = (med[hi][1] - med[lo][1]) / (hi - lo)
        print("per connection (%d -> %d): dump %.1f us %s, restore %.1f us %s (goal <= %.0f us each way)"
              % (lo, hi, d * 1e6, "OK" if d <= GOAL_S else "MISSED", r * 1e6, "OK" if r <= GOAL_S else "MISSED",
                 GOAL_S * 1e6))
    return med


def body(b):
    args = b.args
    logdir = b.fresh_dir("logs")
    print("%s connections; %d warm-up + %d timed rounds" % (",".join(map(str, args.sizes)), args.warmup, args.runs))
    cryos = [("", b.cryo)] + ([(" (baseline)", args.baseline_cryo)] if args.baseline_cryo else [])
    res = {label: {n: [] for n in args.sizes} for label, _ in cryos}
    for i in range(args.warmup + args.runs):
        benchlib.wait_quiet(args.quiet_wait)
        line = []
        for n in args.sizes:
            for label, cryo in cryos:
                b.cryo = cryo
                d, r = tcp_round(b, n, logdir, "%d-%02d%s" % (n, i, "-base" if label else ""))
                if i >= args.warmup:
                    res[label][n].append((d, r))
                line.append("%d%s: dump %s restore %s" % (n, label, fmt_s(d), fmt_s(r)))
        print("%s %d: %s" % ("run" if i >= args.warmup else "warm-up", i + 1, "; ".join(line)))
        sys.stdout.flush()
    b.cryo = cryos[0][1]
    print()
    meds = {label: report(label, res[label], args.sizes, args.runs) for label, _ in cryos}
    if args.baseline_cryo:
        print("== against the baseline (%s) ==" % args.baseline_cryo)
        for n in args.sizes:
            (d, r), (bd, br) = meds[""][n], meds[" (baseline)"][n]
            print("%6d connections: dump %.2fx (%s -> %s), restore %.2fx (%s -> %s)"
                  % (n, d / bd, fmt_s(bd), fmt_s(d), r / br, fmt_s(br), fmt_s(r)))
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--sizes", default="10,1000", help="comma-separated connection counts (default 10,1000)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--baseline-cryo", help="another cryo binary run interleaved with the one under test")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
