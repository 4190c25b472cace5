#!/usr/bin/env python3
"""bench_stream: `cryo dump --to` over loopback of memtouch (256 MiB by
default, every page written with memtouch's pattern), per wire mode:
--insecure and TLS (a pre-shared key), each with --compress none, zstd:1 and
zstd:3. Every round: a fresh `cryo page-server` (port 0), then
`cryo dump -t PID --to ADDR --leave-running` timed from spawn to exit (the
receiver's sync and validation included: the dump waits for the ACK); the
bytes of file data on the wire from cryo's success line. Prints medians:
seconds, MiB/s of file data, MiB on the wire and the ratio to none.

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

WIRE_RE = re.compile(r"([\d.]+) MiB of file data sent as ([\d.]+) MiB")
WROTE_RE = re.compile(r": ([\d.]+) (MiB|GiB|KiB) in ")


def page_server(b, images, auth):
    err = b.path("ps-%d.err" % b.n)
    b.n += 1
    with open(err, "wb") as f:
        p = subprocess.Popen([b.cryo, "page-server", "--listen", "127.0.0.1:0", "-D", images] + auth,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f, close_fds=True)
    b.popens[p.pid] = p
    b.tracked.add(p.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening on (\S+)", benchlib.read_text(err, "") or "")
        if m:
            return p, m.group(1), err
        if p.poll() is not None:
            break
        time.sleep(0.01)
    raise BenchError("page-server did not listen: %s" % benchlib.read_text(err, ""))


def one(b, pid, auth, compress):
    images = os.path.join(b.fresh_dir("recv"), "img")
    srv, addr, err = page_server(b, images, auth)
    argv = [b.cryo, "dump", "-t", str(pid), "--to", addr, "--leave-running", "--compress", compress] + auth
    t0 = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    secs = time.monotonic() - t0
    srv.wait(timeout=60)
    if r.returncode != 0 or srv.returncode != 0:
        raise BenchError("dump --to (%s) failed: %s %s" % (compress, r.stderr, benchlib.read_text(err, "")))
    benchlib.rmtree(os.path.dirname(images))
    m = WIRE_RE.search(r.stderr)
    if m:
        return secs, float(m.group(1)), float(m.group(2))
    m = WROTE_RE.search(r.stderr)
    scale = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    raw = float(m.group(1)) * scale[m.group(2)] if m else float("nan")
    return secs, raw, raw


def body(b):
    a = b.args
    psk = b.path("psk")
    fd = os.open(psk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32).hex().encode())
    os.close(fd)
    pid, _, _ = b.start_memtouch(a.mib)
    modes = [(wire, auth, c) for wire, auth in (("insecure", ["--insecure"]), ("tls-psk", ["--tls-psk", psk]))
             for c in ("none", "zstd:1", "zstd:3")]
    for _ in range(a.warmup):
        one(b, pid, ["--insecure"], "none")
    results = {}
    for rnd in range(a.rounds):
        print("round %d/%d (cpu busy %.0f%%)" % (rnd + 1, a.rounds, 100 * benchlib.wait_quiet(a.quiet_wait)))
        sys.stdout.flush()
        for k in range(len(modes)):
            wire, auth, c = modes[(k + rnd) % len(modes)]
            results.setdefault((wire, c), []).append(one(b, pid, auth, c))
    print("\nmemtouch %d MiB, dump --to 127.0.0.1 --leave-running, medians of %d" % (a.mib, a.rounds))
    print("%-9s %-7s %9s %10s %14s %9s" % ("wire", "compress", "seconds", "MiB/s", "MiB on wire", "vs none"))
    for wire, _, c in modes:
        rs = results[(wire, c)]
        secs = median([r[0] for r in rs])
        raw = median([r[1] for r in rs])
        on_wire = median([r[2] for r in rs])
        base = median([r[2] for r in results[(wire, "none")]])
        print("%-9s %-7s %9.3f %10.0f %14.1f %8.2fx" % (wire, c, secs, raw / secs, on_wire, on_wire / base))
    return 0


def main():
    ap = benchlib.common_args(__doc__, warm_mib=0)
    ap.add_argument("--mib", type=int, default=256, help="memtouch size (default 256)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    args = ap.parse_args()
    return benchlib.run(args, body)


if __name__ == "__main__":
    sys.exit(main())
