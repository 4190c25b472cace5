#!/usr/bin/env python3
"""bench_compress: compressed images on disk (`cryo dump -D --compress`).

For each workload, for each of --compress none, zstd:1, zstd:3 and lz4 (in a
rotating order, all in the same run): `cryo dump` in kill mode timed from
spawn to exit (fsync included), then `cryo restore -d` of that image timed
the same way; the restored process is the next round's original. Reports
medians: the page files' size, dump and restore seconds and MiB/s of page
data (uncompressed), and the size against none.

Workloads: memtouch (--mib, default 256: memtouch's page pattern, which
compresses about 8x) and a JVM heap (bench/HeapFill.java, --jvm-mib of live
objects: hash maps of short strings, log-like text, arrays of counters and
random bytes in equal parts), compiled with javac into the temp directory;
skipped (said so) without javac.

Exit status 0 when every run succeeded, 1 if one failed, 2 on bad setup.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError, median  # noqa: E402

MODES = ("none", "zstd:1", "zstd:3", "lz4")


def page_files(images):
    return sum(os.path.getsize(os.path.join(images, n)) for n in os.listdir(images) if n.startswith("pages-"))


def one(b, pid, mode):
    images = b.fresh_dir("img")
    dump_s, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", images, "--compress", mode, "-q"], b.path("dump.log"))
    b.wait_gone([pid])
    size = page_files(images)
    pidfile = b.path("restored.pid")
    restore_s, _ = b.cryo_or_fail(["restore", "-D", images, "-d", "--pidfile", pidfile, "-q"], b.path("restore.log"))
    new = int(benchlib.read_text(pidfile).strip())
    b.tracked.add(new)
    if new != pid:
        raise BenchError("restored pid %d, expected %d" % (new, pid))
    benchlib.rmtree(images)
    return size, dump_s, restore_s


def bench_workload(b, name, pid, data_mib):
    a = b.args
    for _ in range(a.warmup):
        one(b, pid, "none")
    results = {m: [] for m in MODES}
    for rnd in range(a.rounds):
        print("%s: round %d/%d (cpu busy %.0f%%)" % (name, rnd + 1, a.rounds, 100 * benchlib.wait_quiet(a.quiet_wait)))
        sys.stdout.flush()
        for k in range(len(MODES)):
            m = MODES[(k + rnd) % len(MODES)]
            results[m].append(one(b, pid, m))
    base = median([r[0] for r in results["none"]])
    rows = []
    for m in MODES:
        size = median([r[0] for r in results[m]])
        d = median([r[1] for r in results[m]])
        r = median([r[2] for r in results[m]])
        rows.append("%-8s %-7s %10.1f %7.2fx %9.3f %9.0f %9.3f %9.0f" % (
            name, m, size / 2**20, size / base, d, data_mib / d, r, data_mib / r))
    b.kill(pid)
    return rows


def body(b):
    a = b.args
    out = []
    pid, _, _ = b.start_memtouch(a.mib)
    out += bench_workload(b, "memtouch", pid, a.mib)
    javac = shutil.which("javac")
    if a.jvm_mib and javac:
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "HeapFill.java")
        r = subprocess.run([javac, "-d", b.tmp, src], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise BenchError("javac HeapFill.java failed: %s" % r.stderr)
        heap = a.jvm_mib + 64
        pid, _, _ = b.start_ready(lambda ctl: ["java", "-Xms%dm" % heap, "-Xmx%dm" % heap, "-XX:+UseSerialGC", "-XX:-UsePerfData",
                                               "-cp", b.tmp, "HeapFill", ctl, str(a.jvm_mib)],
                                  "HeapFill %d MiB" % a.jvm_mib, timeout=300)
        # The JVM maps its whole heap and more: its page data is what the dump stores.
        images = b.fresh_dir("probe")
        b.cryo_or_fail(["dump", "-t", str(pid), "-D", images, "-R", "-q"], b.path("probe.log"))
        data_mib = (page_files(images) - 4096) / 2**20
        benchlib.rmtree(images)
        out += bench_workload(b, "jvm", pid, data_mib)
    else:
        print("no javac (or --jvm-mib 0): the JVM heap is skipped")
    print("\ndump -D (kill mode, fsync) and restore -d, medians of %d rounds; MiB/s of page data" % a.rounds)
    print("%-8s %-7s %10s %8s %9s %9s %9s %9s" % ("workload", "compress", "pages MiB", "vs none", "dump s",
                                                  "dump MiB/s", "restore s", "rest MiB/s"))
    for row in out:
        print(row)
    return 0


def main():
    ap = benchlib.common_args(__doc__, warm_mib=0)
    ap.add_argument("--mib", type=int, default=256, help="memtouch size (default 256)")
    ap.add_argument("--jvm-mib", type=int, default=256, help="live objects in the JVM heap (default 256; 0: skip)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    args = ap.parse_args()
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
