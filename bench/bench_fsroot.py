#!/usr/bin/python3
"""`cryo dump --fs-root DIR` of a 200 MiB directory tree (190 files of 1 MiB
in 10 directories, 2,500 files of 4 KiB, 100 symbolic links; incompressible
content), full and incremental (--parent, one 1 MiB file rewritten since),
against `cp -a` and `rsync -a` of the same tree (rsync's second run is its
incremental one, onto its first copy), interleaved in the same rounds; and
the leave-running frozen time with and without --fs-root (the walk runs
inside the freeze). A 64 MiB memtouch is the dumped tree. Every copy and
image goes to the page cache (--no-sync, no fsync by cp or rsync); a sync(2)
before each timed step keeps one step's writeback out of the next's time.

Run: bench/bench_fsroot.py [--runs N] [--cryo PATH --memtouch PATH]
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from benchlib import fmt_s, median  # noqa: E402


def make_tree(root):
    rnd = open("/dev/urandom", "rb")
    for d in range(10):
        sub = os.path.join(root, "dir%d" % d)
        os.makedirs(sub)
        for i in range(19):
            with open(os.path.join(sub, "big%02d" % i), "wb") as f:
                f.write(rnd.read(1 << 20))
        small = os.path.join(sub, "small")
        os.makedirs(small)
        for i in range(250):
            with open(os.path.join(small, "f%03d" % i), "wb") as f:
                f.write(rnd.read(4096))
        for i in range(10):
            os.symlink("small/f%03d" % i, os.path.join(sub, "link%d" % i))
    rnd.close()


def change_one(root, gen):
    with open(os.path.join(root, "dir3", "big07"), "r+b") as f:
        f.write(bytes([gen & 0xff]) * (1 << 20))


def tree_bytes(root):
    return sum(os.lstat(os.path.join(d, n)).st_size for d, _, fs in os.walk(root) for n in fs)


def timed(argv):
    os.sync()  # every timed step starts without the step before's dirty pages
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, timeout=600)
    return time.monotonic() - t0


def data_bytes(d):
    return os.path.getsize(os.path.join(d, "snapshot-data.img"))


def cryo(b, argv, log):
    os.sync()
    t, _ = b.cryo_or_fail(argv, log)
    return t


def body(b):
    args = b.args
    if not shutil.which("rsync"):
        raise benchlib.BenchError("rsync is missing (scripts/install-deps.sh installs it)")
    root = b.fresh_dir("tree")
    make_tree(root)
    tree_mib = tree_bytes(root) / 2**20
    pid, _, _ = b.start_memtouch(64)
    res = {k: [] for k in ("cp", "rsync", "rsync_inc", "full", "inc", "full_b", "inc_b", "frz0", "frz")}
    gen = 1
    for i in range(args.runs):
        busy = benchlib.wait_quiet(args.quiet_wait)
        cp_dst, rs_dst = b.path("cp%d" % i), b.path("rs%d" % i)
        res["cp"].append(timed(["cp", "-a", root, cp_dst]))
        benchlib.rmtree(cp_dst)
        res["rsync"].append(timed(["rsync", "-a", root + "/", rs_dst + "/"]))
        full = b.fresh_dir("full")
        t = cryo(b, ["dump", "-t", str(pid), "-D", full, "-R", "--no-sync", "--fs-root", root],
                 b.path("full%d.log" % i))
        res["full"].append(t)
        res["full_b"].append(data_bytes(full))
        res["frz"].append(benchlib.log_ms(b.path("full%d.log" % i), r"frozen ([0-9.]+) ms"))
        plain = b.fresh_dir("plain")
        cryo(b, ["dump", "-t", str(pid), "-D", plain, "-R", "--no-sync"], b.path("plain%d.log" % i))
        res["frz0"].append(benchlib.log_ms(b.path("plain%d.log" % i), r"frozen ([0-9.]+) ms"))
        change_one(root, gen)
        gen += 1
        res["rsync_inc"].append(timed(["rsync", "-a", root + "/", rs_dst + "/"]))
        inc = b.fresh_dir("inc")
        t = cryo(b, ["dump", "-t", str(pid), "-D", inc, "-R", "--no-sync", "--fs-root", root, "--parent", full],
                 b.path("inc%d.log" % i))
        res["inc"].append(t)
        res["inc_b"].append(data_bytes(inc))
        for d in (inc, full, plain, rs_dst):
            benchlib.rmtree(d)
        print("round %d (cpu busy %.0f%% before): cp -a %s, rsync -a %s / %s, cryo --fs-root %s / --parent %s"
              % (i + 1, busy * 100, fmt_s(res["cp"][-1]), fmt_s(res["rsync"][-1]), fmt_s(res["rsync_inc"][-1]),
                 fmt_s(res["full"][-1]), fmt_s(res["inc"][-1])))
        sys.stdout.flush()
    b.kill(pid)
    cp = median(res["cp"])
    print("\n%.0f MiB tree, medians of %d:" % (tree_mib, args.runs))
    print("  cp -a                      %s" % fmt_s(cp))
    print("  rsync -a (full)            %s  (%.2fx cp)" % (fmt_s(median(res["rsync"])), median(res["rsync"]) / cp))
    print("  rsync -a (one file changed) %s" % fmt_s(median(res["rsync_inc"])))
    print("  cryo dump --fs-root (full) %s  (%.2fx cp), snapshot data %.1f MiB"
          % (fmt_s(median(res["full"])), median(res["full"]) / cp, median(res["full_b"]) / 2**20))
    print("  cryo dump --fs-root --parent (one file changed) %s  (%.2fx rsync's), snapshot data %.1f MiB"
          % (fmt_s(median(res["inc"])), median(res["inc"]) / median(res["rsync_inc"]), median(res["inc_b"]) / 2**20))
    print("  leave-running frozen: %.1f ms with --fs-root, %.1f ms without (the walk: %.1f ms, %.2f ms/MiB)"
          % (median(res["frz"]), median(res["frz0"]), median(res["frz"]) - median(res["frz0"]),
             (median(res["frz"]) - median(res["frz0"])) / tree_mib))
    return 0


if __name__ == "__main__":
    ap = benchlib.common_args(__doc__, warm_mib=0)
    ap.add_argument("--runs", type=int, default=5)
    sys.exit(benchlib.run(ap.parse_args(), body))
