#!/usr/bin/python3
"""End-to-end tests of pre-copy (`cryo dump --pre-copy`): rounds of copying
while the tree runs, then a frozen final round with only what it wrote since.

The dirtier workload (tests/workloads/dirtier.c) writes its pages round and
round without pause and maps a region again every 100 ms; after a restore it
checks every byte against its write counter, so a page it wrote after a round
copied it, and that the final round did not copy again, comes back one
generation old and the restored workload fails its verification
(test_kill_mode, test_leave_running: the final round must send the dirtied
pages again). The rounds are reported on stderr; the tree keeps no
userfaultfd once the pre-copy is over, or once cryo is killed in a round
(test_cryo_killed_mid_round).

Run: test_precopy.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail  # noqa: E402
from test_migrate import Migrate, reap_while  # noqa: E402
from test_stream import (CLOSE, DATA, OPEN, Server, check_nothing_complete, dump_to, frame, hello, hostile,  # noqa: E402
                         leftovers)

ROUND_FRAME = 13  # docs/stream-protocol.md

ROUND = re.compile(r"pre-copy round (\d+): (\d+) pages .* frozen ([\d.]+) ms")
FINAL = re.compile(r"pre-copy final round \((\d+) round\(s\) before it\): (\d+) pages .*dirty rate [\d.]+ MiB/s "
                   r"\((\d+) pages written\), frozen ([\d.]+) ms")


def start(h, mib=64, rate=20, *more):
    w = h.start_workload("dirtier", str(mib), str(rate), *more)
    h.wait_ready(w, timeout=60)
    h.verify_ok(w, when="before the dump")
    return w


def written(line):
    m = re.search(r"written=(\d+)", line)
    if not m:
        fail("no write counter in the verification: %r" % line)
    return int(m.group(1))


def rounds(r):
    """The rounds reported ([(round, stored pages)]) and the final one
    (stored pages, pages written)."""
    text = r.stderr + (r.log or "")
    found = sorted({(int(m.group(1)), int(m.group(2))) for m in ROUND.finditer(text)})
    f = FINAL.search(text)
    if not found or not f:
        fail("the rounds are not reported\n%s" % r.describe())
    check_eq([n for n, _ in found], list(range(len(found))), "rounds reported")
    check_eq(int(f.group(1)), len(found), "rounds before the final one")
    return found, (int(f.group(2)), int(f.group(3)))


def uffd_left(pid):
    """What of the dirty tracking the process still has: userfaultfd fds,
    VMAs registered with a userfaultfd (VmFlags uw)."""
    left = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if "userfaultfd" in os.readlink("/proc/%d/fd/%s" % (pid, fd)):
                left.append("fd %s" % fd)
        except FileNotFoundError:
            pass
    vma = None
    for line in cryotest.read_text("/proc/%d/smaps" % pid, "").splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            vma = line.split()[0]
        elif line.startswith("VmFlags:") and " uw" in line:
            left.append("VMA %s registered (uw)" % vma)
    return left


def wait_untracked(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        left = uffd_left(pid)
        if not left:
            return
        if time.monotonic() > deadline:
            fail("pid %d still has the dirty tracking's %s" % (pid, left[:5]))
        time.sleep(0.05)


def verify_running(h, rw, when):
    """Every page right, and it runs on: more pages written, still right."""
    first = written(h.verify_ok(rw, when=when))
    time.sleep(0.2)
    check(written(h.verify_ok(rw, when=when + " (later)")) > first, "%s: the workload writes no more" % when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)


def restore_and_verify(h, w, images, when):
    cryotest.wait_pids_gone([w.pid])
    r = h.restore(images, detach=True, expected_pid=w.pid)
    verify_running(h, w.restored(r.pid), when)


def test_kill_mode(h):
    w = start(h)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, extra=["--pre-copy"])
    found, (final_pages, final_written) = rounds(r)
    h.note("rounds %s, final %d pages (%d written)" % (found, final_pages, final_written))
    check(len(found) >= 2, "only %d round(s) before the final one" % len(found))
    check(found[0][1] >= 64 * 256, "round 0 stored %d pages, not all of the 64 MiB" % found[0][1])
    check(final_pages < found[0][1] // 4, "the final round stored %d pages: no better than round 0" % final_pages)
    # The tree wrote between the last round and the freeze: the final round
    # has something to send again (what the verification below checks).
    check(final_written > 0, "no page written since the last round: the test proves nothing")
    check(os.path.isdir(os.path.join(images, "pre-copy", "0")), "no round 0 in the image directory")
    show = h.run_cryo(["show", images], tag="show")
    check(show.rc == 0 and "pre-copy/%d" % (len(found) - 1) in show.stdout + show.stderr,
          "cryo show does not name the last round as the parent\n%s" % show.describe())
    h.reap_original(w)
    # The chain's links are relative: the directory moves whole.
    moved = images + "-moved"
    os.rename(images, moved)
    restore_and_verify(h, w, moved, "after the pre-copy kill-mode dump")


def test_leave_running(h):
    w = start(h)
    images = h.mkdir("img")
    maps_before = [(m["start"], m["end"], m["prot"]) for m in cryotest.proc_maps(w.pid)]
    r = h.dump(w.pid, images, leave_running=True, extra=["--pre-copy", "--pre-copy-rounds", "3"])
    check("pre-copy round 0:" in r.stderr, "the rounds are not on stderr\n%s" % r.describe())
    found, _ = rounds(r)
    check(len(found) <= 3, "%d rounds for --pre-copy-rounds 3" % len(found))
    # The tracker was this pre-copy's: it is gone, and with it every
    # registration; the original runs on and checks itself.
    wait_untracked(w.pid)
    line = h.verify_ok(w, when="the original after the pre-copy dump")
    h.note("original %s; maps before %d VMAs" % (line, len(maps_before)))
    h.kill_and_reap(w)
    restore_and_verify(h, w, images, "after the pre-copy leave-running dump")


def test_rounds_copy_while_running(h):
    """A round's pages are read while the tree runs (its freeze only arms
    the tracking): held once round 0's copy is done (CRYO_TEST_PRECOPY_HOLD),
    the program is untraced, answers and writes on, also pages the copy had
    already read; those come back from the later rounds (the restored
    program checks every byte), so a round that let them go (its protection
    taken after the copy instead of before) fails here. A round is a parent
    only: `cryo restore` of it is refused by name."""
    w = start(h)
    images = h.mkdir("img")
    hold = os.path.join(h.tmp_root, "precopy-hold")
    open(hold, "w").close()
    base = os.path.join(h.tmp_root, "held-cryo")
    argv = ["dump", "-t", str(w.pid), "-D", images, "--pre-copy", "--log-file", base + ".log", "-v"]
    with open(base + ".err", "wb") as err:
        p = subprocess.Popen([h.cryo] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             close_fds=True, env=dict(os.environ, CRYO_TEST_PRECOPY_HOLD=hold))
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(hold + ".held") and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        check(os.path.exists(hold + ".held"), "round 0 never held its copy (cryo status %s)\n%s"
              % (p.poll(), cryotest.read_text(base + ".err", "")[-3000:]))
        log = cryotest.read_text(base + ".log", "")
        check("pre-copy round 0:" not in log, "round 0 reported before its copy was done")
        # The tree runs during the round: not traced, not stopped, and it
        # answers and writes on.
        st = cryotest.proc_status(w.pid)
        check(st["TracerPid"] == "0" and st["State"][0] in "SR", "during round 0's copy pid %d is %s, traced by %s"
              % (w.pid, st["State"], st["TracerPid"]))
        first = written(h.verify_ok(w, when="during round 0's copy"))
        time.sleep(0.3)
        later = written(h.verify_ok(w, when="during round 0's copy (later)"))
        h.note("written %d -> %d while round 0 was held" % (first, later))
        check(later > first, "the program wrote nothing while round 0 was held")
    finally:
        os.unlink(hold)
    try:
        rc = p.wait(timeout=cryotest.CRYO_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)
        rc = "TIMEOUT"
    h.reap_orphans()
    r = cryotest.CryoResult(argv, rc, "", cryotest.read_text(base + ".err", ""), cryotest.read_text(base + ".log"))
    check_eq(rc, 0, "cryo dump --pre-copy exit status\n%s" % r.describe())
    found, (final_pages, final_written) = rounds(r)
    h.note("rounds %s, final %d pages (%d written)" % (found, final_pages, final_written))
    check(len(found) >= 2, "only %d round(s) before the final one" % len(found))
    check(re.search(r"pre-copy round 0: .*frozen [\d.]+ ms, copied [\d.]+ ms while the tree ran", r.stderr),
          "round 0 does not report its copy while the tree ran\n%s" % r.describe())
    cryotest.check_private_image(images)
    round0 = os.path.join(images, "pre-copy", "0")
    show = h.run_cryo(["show", round0], tag="show")
    check(show.rc == 0 and "live-copied-pages" in show.stdout, "cryo show of round 0\n%s" % show.describe())
    h.reap_original(w)
    refused = h.run_cryo(["restore", "-D", round0, "-d"], tag="restore-round")
    check(refused.rc != 0 and "live-copied-pages" in refused.message,
          "restore of a pre-copy round: expected a refusal naming live-copied-pages\n%s" % refused.describe())
    restore_and_verify(h, w, images, "after a pre-copy whose round 0 was held while the program wrote")


def test_cryo_killed_mid_round(h):
    # No churn: its mappings stay as they are, so they can be compared.
    w = start(h, 128, 20, "nochurn")
    maps_before = cryotest.proc_maps(w.pid)
    fds_before = sorted(os.listdir("/proc/%d/fd" % w.pid))
    images = h.mkdir("img")
    base = os.path.join(h.tmp_root, "killed-cryo")
    with open(base + ".err", "wb") as err:
        p = subprocess.Popen([h.cryo, "dump", "-t", str(w.pid), "-D", images, "--pre-copy", "--pre-copy-rounds",
                              "30", "--log-file", base + ".log", "-v"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, close_fds=True)
    # Killed once round 1 began (its directory exists: the tree is seized or
    # being read), before it ended.
    round1 = os.path.join(images, "pre-copy", "1")
    deadline = time.monotonic() + 60
    while not os.path.exists(round1) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    ended = p.poll() is not None
    p.kill()
    p.wait(timeout=10)
    h.reap_orphans()
    log = cryotest.read_text(base + ".log", "")
    check(not ended, "cryo ended before it could be killed in round 1\n%s" % log[-3000:])
    check(os.path.exists(round1), "round 1 never began\n%s" % log[-3000:])
    check("pre-copy round 1:" not in log, "round 1 had ended when cryo was killed: try again")
    # The original: running, not traced, no userfaultfd, no VMA registered
    # (the tracker ended with cryo), no mapping or fd of cryo's left.
    st = cryotest.proc_status(w.pid)
    check(st is not None and st["TracerPid"] == "0", "pid %d still traced" % w.pid)
    wait_untracked(w.pid)
    st = cryotest.proc_status(w.pid)
    check(st["State"][0] in "SR", "pid %d left in state %r" % (w.pid, st["State"]))
    check_eq(sorted(os.listdir("/proc/%d/fd" % w.pid)), fds_before, "the original's fds")
    check_eq(cryotest.proc_maps(w.pid), maps_before, "the original's mappings")
    h.verify_ok(w, when="the original after cryo was killed in round 1")
    # The next pre-copy starts from scratch (a new directory) and works.
    images2 = h.mkdir("img2")
    h.dump(w.pid, images2, extra=["--pre-copy", "--pre-copy-rounds", "2"])
    h.reap_original(w)
    restore_and_verify(h, w, images2, "after a pre-copy that followed a killed one")
    # (The rounds a killed cryo left are incomplete images, refused as such;
    # killed between the directory's mkdir and its marker, it is empty.)
    empty = not os.listdir(round1)
    r = h.run_cryo(["show", round1], log=False, tag="show")
    check(r.rc != 0 and ("incomplete" in r.message or (empty and "inventory.img" in r.message)),
          "cryo show of the interrupted round: %s" % r.message)


def test_streamed(h):
    """dump --to --pre-copy: every round streamed to a page server on
    loopback, which lays them out in DIR/pre-copy/N as a local pre-copy."""
    w = start(h)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images)
    r = dump_to(h, w.pid, srv.addr, extra=["--pre-copy"])
    check_eq(r.rc, 0, "dump --to --pre-copy exit status\n%s" % r.describe())
    check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
    found, (final_pages, final_written) = rounds(r)
    h.note("rounds %s, final %d pages (%d written)" % (found, final_pages, final_written))
    check(final_written > 0 and final_pages < found[0][1] // 4, "final round: %d pages" % final_pages)
    cryotest.check_private_image(images)
    check(os.path.isdir(os.path.join(images, "pre-copy", str(len(found) - 1))), "the last round is not in DIR")
    h.reap_original(w)
    restore_and_verify(h, w, images, "after dump --to --pre-copy")


def test_streamed_leave_running(h):
    w = start(h)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images)
    r = dump_to(h, w.pid, srv.addr, leave_running=True, extra=["--pre-copy", "--pre-copy-rounds", "2"])
    check_eq(r.rc, 0, "dump --to -R --pre-copy exit status\n%s" % r.describe())
    check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
    found, _ = rounds(r)
    check(len(found) <= 2, "%d rounds for --pre-copy-rounds 2" % len(found))
    wait_untracked(w.pid)
    h.verify_ok(w, when="the original after dump --to -R --pre-copy")
    h.kill_and_reap(w)
    restore_and_verify(h, w, images, "after dump --to -R --pre-copy")


def test_receiver_killed_mid_round(h):
    """kill -9 of the page server while it receives round 1: the dump
    fails, the tree runs on untouched and untracked, nothing looks complete."""
    w = start(h, 128, 20, "nochurn")
    maps_before = cryotest.proc_maps(w.pid)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images)
    base = os.path.join(h.tmp_root, "dump-to")
    with open(base + ".err", "wb") as err:
        p = subprocess.Popen([h.cryo, "dump", "-t", str(w.pid), "--to", srv.addr, "--insecure", "--pre-copy",
                              "--pre-copy-rounds", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, close_fds=True)
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        if any(os.path.exists(os.path.join(t, "pre-copy", "1")) for t in leftovers(images)):
            break
        time.sleep(0.001)
    srv.stop()
    rc = p.wait(timeout=60)
    h.reap_orphans()
    msg = cryotest.read_text(base + ".err", "")
    check(rc == 1 and "left running" in msg, "dump --to with its receiver killed: status %s: %s" % (rc, msg))
    check("pre-copy round 0:" in msg, "killed before round 1: %s" % msg)
    wait_untracked(w.pid)
    st = cryotest.proc_status(w.pid)
    check(st["TracerPid"] == "0" and st["State"][0] in "SR", "pid %d left %s, traced by %s" % (w.pid, st["State"],
                                                                                           st["TracerPid"]))
    check_eq(cryotest.proc_maps(w.pid), maps_before, "the original's mappings")
    h.verify_ok(w, when="the original after its receiver was killed in round 1")
    check_nothing_complete(h, images, "receiver killed in round 1")


def test_migrate(h):
    """migrate --pre-copy into page-server --restore on loopback."""
    w = start(h)
    images = os.path.join(h.mkdir("recv"), "img")
    pidfile = os.path.join(h.tmp_root, "migrated.pid")
    srv = Server(h, images, extra=["--restore", "--pidfile", pidfile])
    m = Migrate(h, w.pid, srv.addr, ["--insecure", "--pre-copy", "-v"])
    h.reap_original(w, timeout=60)
    reap_while(m, [w.pid])
    check_eq(m.wait(), 0, "cryo migrate --pre-copy exit status (%s)" % m.stderr())
    check_eq(srv.wait(), 0, "page-server --restore exit status (%s)" % srv.stderr())
    check("pre-copy round 1:" in m.stderr() and "pre-copy final round" in m.stderr(),
          "migrate did not report its rounds: %s" % m.stderr())
    check_eq(cryotest.read_text(pidfile, "").strip(), str(w.pid), "pidfile of page-server --restore")
    h.tracked_pids.append(w.pid)
    verify_running(h, w.restored(w.pid), "after migrate --pre-copy")


def test_hostile_rounds(h):
    """ROUND frames out of order, in the middle of an image, or a round that
    never ends: the page server refuses by name and keeps nothing."""
    import struct
    core = frame(OPEN, 1, b"core-1.img") + frame(DATA, 1, struct.pack("<Q", 0) + b"x") + frame(CLOSE, 1, struct.pack("<Q", 1))
    for name, data, must in (
            ("round-order", hello() + frame(ROUND_FRAME, 0, b"1"), "where pre-copy round 0 was due"),
            ("round-text", hello() + frame(ROUND_FRAME, 0, b"00"), "where pre-copy round 0 was due"),
            ("round-inside", hello() + frame(ROUND_FRAME, 0, b"0") + core + frame(ROUND_FRAME, 0, b"1"),
             "ROUND frame in the middle of an image"),
            ("round-cut", hello() + frame(ROUND_FRAME, 0, b"0") + core, "connection closed")):
        hostile(h, data, must, name)


def test_refused(h):
    w = start(h, 16, 5)
    images = h.mkdir("img")
    for extra, must in ((["--pre-copy", "--parent", images], "does not take --parent"),
                        (["--pre-copy-rounds", "2"], "goes with --pre-copy"),
                        (["--pre-copy", "--pre-copy-rounds", "0"], "at least 1"),
                        (["--pre-copy", "--track-mem"], "--track-mem needs --leave-running")):
        r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("x%d" % len(must))] + extra, tag="refused")
        check(r.rc != 0 and must in r.message, "expected a refusal naming %r\n%s" % (must, r.describe()))
    # A directory that holds rounds already is not written over.
    os.makedirs(os.path.join(images, "pre-copy"))
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--pre-copy"], tag="refused")
    check(r.rc == 1 and "already holds pre-copy rounds" in r.message, "rounds over rounds\n%s" % r.describe())
    wait_untracked(w.pid)
    h.verify_ok(w, when="after the refusals")
    check(cryotest.proc_status(w.pid)["TracerPid"] == "0", "traced after the refusals")


if __name__ == "__main__":
    sys.exit(cryotest.main([test_kill_mode, test_leave_running, test_rounds_copy_while_running,
                            test_cryo_killed_mid_round, test_streamed,
                            test_streamed_leave_running, test_receiver_killed_mid_round, test_migrate,
                            test_hostile_rounds, test_refused],
                           description=__doc__))
