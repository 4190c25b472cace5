#!/usr/bin/env python3
"""bench_hugetlb: dump and restore of shared hugetlb memory (MAP_SHARED |
MAP_HUGETLB, 2 MiB pages) against the same amount of shared anonymous shmem
memory (MAP_SHARED, 4 KiB pages), measured in the same run, interleaved.

memtouch with --mib MiB of "hugetlb-shared" and of "shared" memory (every
page written). Each round (order alternating) dumps each kind in kill mode
(`cryo dump -t PID -D DIR`, timed from spawn to exit), then restores it
(`cryo restore -D DIR -d`, timed), asks memtouch to verify every page and
kills it. The hugetlb pool is raised by what the run needs and put back at
the end. Prints the medians and the ratios to the first kind.

`--kinds` picks other memtouch modes (the first is the one compared):
"hugetlbfs-file" (a file of a hugetlbfs mount the bench makes, mapped
shared), "hugetlb-private" (private anonymous), "hugetlb-private-memfd" (a
hugetlb memfd mapped private, every page copied on write).
"""
import subprocess
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, fmt_s, median  # noqa: E402

POOL = "/proc/sys/vm/nr_hugepages"


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def write_int(path, n):
    with open(path, "w") as f:
        f.write("%d\n" % n)


def one_round(b, kind, mib, logdir, tag):
    pid, ctl, _ = b.start_memtouch(mib, huge=kind)
    img = b.path("img-" + tag)
    t_dump, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", img], os.path.join(logdir, "dump-%s.log" % tag))
    b.reap(pid)
    b.wait_gone([pid])
    pidfile = os.path.join(logdir, "restore-%s.pid" % tag)
    b.tracked.add(pid)
    t_restore, _ = b.cryo_or_fail(["restore", "-D", img, "-d", "--pidfile", pidfile],
                                  os.path.join(logdir, "restore-%s.log" % tag))
    b.wait_running(pid)
    verdict = b.verify(pid, ctl)
    b.kill(pid)
    b.wait_gone([pid])
    if kind == "hugetlbfs-file":  # its pages go back to the pool for the next round
        os.unlink(os.path.join(os.environ["MEMTOUCH_HUGETLBFS"], "memtouch.data"))
    stored = benchlib.dir_bytes(img)
    benchlib.rmtree(img)
    return {"dump": t_dump, "restore": t_restore, "verify": verdict, "stored": stored}


def body(b):
    args = b.args
    logdir = b.fresh_dir("logs")
    # Twice the memory: a killed original's hugetlbfs file stays on its mount
    # until the restore replaces it; the restore's check of free pages counts
    # a hugetlb memfd's whole size (made, but holding no page here) and the
    # private mapping's.
    need = args.mib if "hugetlbfs-file" in args.kinds or "hugetlb-private-memfd" in args.kinds else args.mib // 2
    mnt = None
    old = read_int(POOL)
    write_int(POOL, old + need)
    try:
        if "hugetlbfs-file" in args.kinds:
            d = b.fresh_dir("hugetlbfs")
            subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", d], check=True)
            mnt = d
            os.environ["MEMTOUCH_HUGETLBFS"] = mnt
        if read_int(POOL) < old + need:
            raise BenchError("the kernel reserved %d of %d huge pages of 2 MiB" % (read_int(POOL) - old, need))
        kinds = args.kinds
        res = {k: [] for k in kinds}
        busy_list = []
        print("dump + restore of %d MiB shared memory, %d warm-up + %d timed rounds" % (args.mib, args.warmup, args.runs))
        for i in range(args.warmup + args.runs):
            timed = i >= args.warmup
            busy = benchlib.wait_quiet(args.quiet_wait)
            order = kinds if i % 2 == 0 else kinds[::-1]
            line = []
            for k in order:
                r = one_round(b, k, args.mib, logdir, "%s-%02d" % (k, i))
                line.append("%s dump %s restore %s (image %.0f MiB) %s" % (k, fmt_s(r["dump"]), fmt_s(r["restore"]),
                                                                         r["stored"] / 2**20, r["verify"]))
                if timed:
                    res[k].append(r)
            if timed:
                busy_list.append(busy)
            print("%s %d (cpu %2.0f%% busy before): %s" % ("run" if timed else "warm-up",
                                                          i - args.warmup + 1 if timed else i + 1, busy * 100,
                                                          "; ".join(line)))
            sys.stdout.flush()
        print()
        print("== bench_hugetlb: %d MiB, medians of %d runs ==" % (args.mib, args.runs))
        for step in ("dump", "restore"):
            first = median([r[step] for r in res[kinds[0]]])
            for k in kinds:
                m = median([r[step] for r in res[k]])
                print("%-8s %-22s %-10s ratio to %s %.2f" % (step, k, fmt_s(m), kinds[0], m / first))
            for k in kinds:
                print("  all %s %s raw: %s" % (k, step, ", ".join("%.3f" % r[step] for r in res[k])))
        if max(busy_list) > 0.15:
            print("WARNING: other work was running (CPU up to %.0f%% busy before a round): figures are skewed"
                  % (max(busy_list) * 100))
    finally:
        if mnt:
            os.environ.pop("MEMTOUCH_HUGETLBFS", None)
            subprocess.run(["umount", mnt], check=False)
        write_int(POOL, old)
    return 0


def main():
    ap = benchlib.common_args(__doc__.splitlines()[0], warm_mib=0)
    ap.add_argument("--mib", type=int, default=512, help="MiB of shared memory (default 512, a multiple of 2)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--kinds", default="hugetlb-shared,shared",
                    help="memtouch modes, comma-separated, the first compared (default hugetlb-shared,shared)")
    args = ap.parse_args()
    args.kinds = args.kinds.split(",")
    if args.mib <= 0 or args.mib % 2:
        ap.error("--mib must be a positive multiple of 2")
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
