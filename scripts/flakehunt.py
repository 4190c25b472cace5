#!/usr/bin/env python3
"""Runs the e2e and fuzz suites round after round, one suite per hold of the
shared suite lock, and records every run: exit status, time, and what the run
left behind (workload processes, network namespaces, cryo nft tables, mounts,
huge pages, /tmp/cryo-e2e-* directories).

    scripts/flakehunt.py --build build --out /tmp/flakehunt [--rounds N]
                         [--until HH:MM] [--only REGEX] [--skip REGEX]

Each run is `flock LOCK ctest --test-dir BUILD -R ^NAME$ --output-on-failure`
with a snapshot of the machine taken inside the same lock hold, before and
after, so a leftover is charged to the suite that made it even while other
people's runs take the lock in between. CRYO_E2E_KEEP_FAILED=1 is set: a
failed run keeps its /tmp/cryo-e2e-* directory (cryo's --log-file) for
reading. Results: OUT/runs.tsv (one line a run), OUT/rN-NAME.out (ctest's
output of a failed or leaving run), and the table printed at the end.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time

LOCK = "/tmp/cryo-suite.lock"
# Programs the tests start besides the built workloads (matched on comm of a
# process that appeared during the run and is still there after it).
OUTSIDE_PROGRAMS = {"sleep", "python3", "bash", "sh", "sqlite3", "postgres", "nginx", "java",
                    "tmux", "tmux: server", "screen", "SCREEN", "cryo", "socat", "unshare"}


def sh(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout if p.returncode == 0 else ""


def processes(marks):
    """pid/starttime -> description of processes that look like ours: exe or
    cmdline under one of `marks` (the build directory, /tmp/cryo-e2e-), or an
    orphaned outside program of the kind the tests run."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        comm = st[st.find("(") + 1:st.rfind(")")]
        starttime = st[st.rfind(")") + 2:].split()[19]
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            exe = ""
        ppid = int(st[st.rfind(")") + 2:].split()[1])
        # An outside program counts only once orphaned (a test's leftover is
        # reparented to init when the harness, a subreaper, exits): others'
        # shells and builds on this machine are not.
        ours = any(m in exe or m in cmd for m in marks) or (comm in OUTSIDE_PROGRAMS and ppid == 1)
        if ours:
            out["%d/%s" % (pid, starttime)] = "%d %s [%s]" % (pid, comm, cmd[:120])
    return out


def snapshot(marks):
    hp = {}
    base = "/sys/kernel/mm/hugepages"
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        with open(os.path.join(base, d, "nr_hugepages")) as f:
            hp[d] = f.read().strip()
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(" ".join(l.split()[3:5]) for l in f)
    return {
        "procs": processes(marks),
        "netns": sorted(sh(["ip", "netns", "list"]).split("\n")),
        "nft": sorted(l for l in sh(["nft", "list", "tables"]).splitlines() if "cryo" in l),
        "mounts": mounts,
        "hugepages": hp,
        "tmpdirs": sorted(d for d in os.listdir("/tmp") if d.startswith("cryo-e2e-")),
    }


def leftovers(before, after):
    """What the run left: things in `after` not in `before`."""
    left = []
    for key, desc in after["procs"].items():
        if key not in before["procs"]:
            left.append("process " + desc)
    for k in ("netns", "nft", "mounts", "tmpdirs"):
        for item in after[k]:
            if item and item not in before[k]:
                left.append("%s %s" % (k, item))
    if after["hugepages"] != before["hugepages"]:
        left.append("hugepages %s -> %s" % (before["hugepages"], after["hugepages"]))
    return left


def run_one(args):
    """Inside the lock: snapshot, ctest, snapshot; one JSON line on stdout."""
    marks = [os.path.dirname(os.path.realpath(args.build)) + "/", "/tmp/cryo-e2e-"]
    before = snapshot(marks)
    env = dict(os.environ, CRYO_E2E_KEEP_FAILED="1")
    t0 = time.monotonic()
    p = subprocess.run(["ctest", "--test-dir", args.build, "-R", "^%s$" % args.one,
                        "--output-on-failure"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env)
    secs = time.monotonic() - t0
    # Processes a test released may take a moment to be reaped by the
    # harness's exit; give the kernel a short, bounded chance.
    for _ in range(20):
        after = snapshot(marks)
        left = leftovers(before, after)
        if not any(l.startswith("process ") for l in left):
            break
        time.sleep(0.1)
    loadavg = open("/proc/loadavg").read().split()[0]
    print(json.dumps({"rc": p.returncode, "secs": round(secs, 1), "left": left,
                      "load": loadavg, "output": p.stdout}))
    return 0


def list_suites(build):
    out = subprocess.run(["ctest", "--test-dir", build, "-N"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    return re.findall(r"Test +#\d+: ((?:e2e|fuzz)_\S+)", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="/tmp/flakehunt")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--until", help="start no run after this UTC time (HH:MM)")
    ap.add_argument("--only", help="regex of suites to run")
    ap.add_argument("--skip", help="regex of suites to leave out")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return run_one(args)

    os.makedirs(args.out, exist_ok=True)
    suites = list_suites(args.build)
    if args.only:
        suites = [s for s in suites if re.search(args.only, s)]
    if args.skip:
        suites = [s for s in suites if not re.search(args.skip, s)]
    tsv = open(os.path.join(args.out, "runs.tsv"), "a")
    stop = None
    if args.until:
        hh, mm = map(int, args.until.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        stop = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    for rnd in range(args.rounds):
        for s in suites:
            if stop and datetime.datetime.now(datetime.timezone.utc) >= stop:
                print("stopped at --until %s" % args.until)
                return 0
            t0 = time.monotonic()
            p = subprocess.run(["flock", LOCK, sys.executable, os.path.abspath(__file__),
                                "--build", args.build, "--one", s],
                               stdout=subprocess.PIPE, text=True)
            waited = time.monotonic() - t0
            try:
                r = json.loads(p.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                r = {"rc": "runner-error", "secs": 0, "left": [], "load": "?", "output": p.stdout}
            status = "ok" if r["rc"] == 0 else "FAIL"
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
            if r["rc"] != 0 or r["left"]:
                with open(os.path.join(args.out, "r%d-%s.out" % (rnd, s)), "w") as f:
                    f.write(r["output"])
            tsv.write("%s\t%d\t%s\t%s\t%s\t%.0f\t%s\t%s\n" % (
                stamp, rnd, s, status, r["secs"], waited - r["secs"], r["load"], "; ".join(r["left"])))
            tsv.flush()
            print("%s round %d %-40s %-4s %6.1fs load %s%s" % (
                stamp, rnd, s, status, r["secs"], r["load"],
                ("  LEFT: " + "; ".join(r["left"])) if r["left"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
