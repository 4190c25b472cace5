#!/usr/bin/python3
"""Incremental dumps: a 1 GiB memtouch process, 10 MiB of it written between
dumps (through /proc/PID/mem: 2560 pages, either 10 MiB in a row or pages
scattered at random), dumped --leave-running in full and with --parent against
a --leave-running image of it: dump time and bytes of page files, medians.
The incremental dump twice: with dirty tracking (the parent dumped with
--track-mem: only the pages written since are read) and by content (every
page the parent stored read again and hashed), in the same run.

Run: bench/bench_incremental.py [--runs N] [--cryo PATH --memtouch PATH]
"""
import os
import random
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from benchlib import fmt_s, median  # noqa: E402

MIB = 1024
DIRTY_PAGES = 10 * 256


def page_bytes(d):
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.startswith("pages-"))


def dirty(pid, base, pages, scattered, rng, gen):
    """Writes one byte pattern into 10 MiB of the process."""
    data = bytes([gen & 0xff]) * 4096
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as mem:
        if scattered:
            for p in rng.sample(range(pages), DIRTY_PAGES):
                mem.seek(base + p * 4096)
                mem.write(data)
        else:
            start = rng.randrange(pages - DIRTY_PAGES)
            mem.seek(base + start * 4096)
            mem.write(data * DIRTY_PAGES)


def biggest_anon(pid):
    best = (0, 0)
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if len(parts) < 6 and "rw" in parts[1] and hi - lo > best[1] - best[0]:
                best = (lo, hi)
    return best


def body(b):
    args = b.args
    rng = random.Random(7)
    pid, ctl, _ = b.start_memtouch(MIB)
    lo, hi = biggest_anon(pid)
    pages = (hi - lo) // 4096
    gen = 1
    tracker = 0
    for scattered in (False, True):
        full_t, full_b, inc_t, inc_b, trk_t, trk_b = [], [], [], [], [], []
        for i in range(args.runs):
            # A fresh parent each run: exactly 10 MiB written since it.
            parent = b.fresh_dir("parent")
            log = b.path("parent%d.log" % i)
            b.cryo_or_fail(["dump", "-t", str(pid), "-D", parent, "-R", "--no-sync", "--track-mem"], log)
            m = re.search(r"memory tracker started \(pid (\d+)\)", open(log).read())
            tracker = int(m.group(1)) if m else tracker
            dirty(pid, lo, pages, scattered, rng, gen)
            gen += 1
            # Tracked first: the dumps after it move the tracking on, and
            # the comparison then runs against the same parent and bytes.
            trk = b.fresh_dir("trk")
            t, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", trk, "-R", "--no-sync", "--parent", parent],
                                  b.path("trk%d.log" % i))
            trk_t.append(t)
            trk_b.append(page_bytes(trk))
            full = b.fresh_dir("full")
            t, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", full, "-R", "--no-sync"], b.path("full%d.log" % i))
            full_t.append(t)
            full_b.append(page_bytes(full))
            inc = b.fresh_dir("inc")
            t, _ = b.cryo_or_fail(["dump", "-t", str(pid), "-D", inc, "-R", "--no-sync", "--parent", parent],
                                  b.path("inc%d.log" % i))
            inc_t.append(t)
            inc_b.append(page_bytes(inc))
            for d in (full, inc, trk, parent):
                benchlib.rmtree(d)
        what = "scattered pages" if scattered else "10 MiB in a row"
        print("dirty %-16s full dump %s, %6.1f MiB | incremental by content %s, %6.1f MiB | with dirty tracking "
              "%s, %6.1f MiB  (medians of %d)"
              % (what + ":", fmt_s(median(full_t)), median(full_b) / 2**20, fmt_s(median(inc_t)),
                 median(inc_b) / 2**20, fmt_s(median(trk_t)), median(trk_b) / 2**20, args.runs))
    if tracker:
        os.kill(tracker, signal.SIGKILL)
    b.kill(pid)
    return 0


if __name__ == "__main__":
    ap = benchlib.common_args(__doc__, warm_mib=0)
    ap.add_argument("--runs", type=int, default=5)
    sys.exit(benchlib.run(ap.parse_args(), body))
