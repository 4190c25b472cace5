#!/usr/bin/python3
"""Interrupted restores leave nothing behind, and the next restore succeeds.

cryo is killed (SIGKILL, which it cannot catch, and SIGINT) at every step of
a restore, with the test hook CRYO_RESTORE_FAULT_POINT=POINT:SIGNAL (src/base/
fault.h), and at random moments; workloads: a tree, shared memory of every kind
(SysV segments the restore creates, /dev/shm files), threads. After each kill:
no process of the image is left, no /dev/shm/.cryo-* file and no SysV segment
the restore made, and a plain restore of the same image then succeeds and the
workload verifies its state.

Run: test_restore_faults.py --cryo PATH --workloads DIR [NAME ...]
Longer campaigns on demand: CRYO_RESTORE_KILLS=N (random timed kills per
workload, default 6), e.g. CRYO_RESTORE_KILLS=200 with --deadline 3600.
"""
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
import faultlib  # noqa: E402
import test_shm  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_stat  # noqa: E402

# Every step of a restore, in order (restore.cc, helper.cc).
POINTS = ["loaded", "objects", "root-cloned", "helper-cloned", "seized", "memory-built", "tree-created",
          "finalized", "shm-finished"]
SIGNALS = [("KILL", signal.SIGKILL), ("INT", signal.SIGINT)]
TIMED_KILLS = int(os.environ.get("CRYO_RESTORE_KILLS", "6"))
# One image is restored many times here, and every restored instance writes
# its own files before it is killed (the tree's shared log, the state
# workload's shared file): changes the programs make themselves, which the
# campaign lets through (files changed since the dump are tested in
# test_changed.py).
REWIND = ["--ignore-changed-files"]


def image_ids(h, images, live_only=False):
    """Every pid and thread id of the image (with live_only, not those of
    its zombies)."""
    shown = h.show_json(images)
    return [p["pid"] for p in shown["processes"] if not (live_only and p.get("zombie"))]


def shm_leftovers(cryo_pid):
    """Files under /dev/shm that the cryo `cryo_pid` made (its temporaries
    are named .cryo-restore-PID-STARTTIME-ID)."""
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(".cryo-restore-%d-" % cryo_pid))


def sysv_creators():
    """(id, creator pid) of every SysV segment."""
    out = set()
    for line in (cryotest.read_text("/proc/sysvipc/shm") or "").splitlines()[1:]:
        f = line.split()
        out.add((int(f[1]), int(f[4])))
    return out


# The SysV segments there before each interrupted cryo started, by its pid.
# A segment outlives its creator, and /proc/sysvipc/shm keeps naming the
# creator's pid after the kernel gave that pid to another process: segments
# other runs left behind may name the pid of a later cryo that made none.
SEGMENTS_BEFORE = {}


def sysv_ids(cryo_pid):
    """Ids of the SysV segments cryo_pid created."""
    return {i for i, cpid in sysv_creators() - SEGMENTS_BEFORE.get(cryo_pid, set()) if cpid == cryo_pid}


# Every cryo this test starts carries this variable (faultlib.janitors).
RUN_TAG = faultlib.RUN_TAG


def janitors():
    return faultlib.janitors()


def check_nothing_left(h, pids, cryo_pid, what, paths=()):
    """Within 10 s: no process of the image, no janitor, no /dev/shm file and
    no SysV segment the killed cryo made (only those: other tests may run),
    none of `paths` (files the restore would create)."""
    deadline = time.monotonic() + 10
    while True:
        h.reap_orphans(everything=True)
        alive = [p for p in pids if proc_stat(p) is not None]
        files = shm_leftovers(cryo_pid) + [p for p in paths if os.path.lexists(p)]
        state = (alive, janitors(), files, sorted(sysv_ids(cryo_pid)))
        if not any(state):
            return
        if time.monotonic() > deadline:
            fail("%s: left behind: processes %s, janitors %s, files %s, SysV segments %s"
                 % ((what,) + state))
        time.sleep(0.02)


def interrupted_restore(h, images, env=None, kill_after=None, sig=signal.SIGKILL):
    """Runs `cryo restore`; with kill_after, sends it `sig` after that many
    seconds. Returns (its exit status (negative: killed by a signal), its pid)."""
    pidfile = os.path.join(h.tmp_root, "fault.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    full_env = dict(os.environ)
    full_env.update(env or {})
    key, value = RUN_TAG.split("=")
    full_env[key] = value
    before = sysv_creators()
    with open(os.path.join(h.tmp_root, "fault.err"), "wb") as err:
        p = subprocess.Popen([h.cryo, "restore", "-D", images, "--detach", "--pidfile", pidfile] + REWIND,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=full_env,
                             close_fds=True)
        SEGMENTS_BEFORE[p.pid] = before
        if kill_after is not None:
            time.sleep(kill_after)
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            fail("cryo restore did not finish within 30 s (%s)" % (env or kill_after))
    return rc, p.pid


def restore_and_verify(h, w, images, what):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=REWIND)
    h.verify_ok(w.restored(r.pid), when=what)
    return r


def kill_restored(h, pids):
    for pid in pids:
        h.cleanup_one(pid)
    cryotest.wait_pids_gone(pids)


def committed(h, w, live):
    """Whether a restore whose cryo was killed had released the tree: every
    `live` process (those of the image but its zombies) still running a
    second later, and the workload verifying itself. A tree killed before
    the commit dies with its cryo; its processes stay zombies of the
    harness (the subreaper) until reaped, and a zombie is no released
    process."""
    for pause in (0, 1):
        time.sleep(pause)
        if not all(pid_alive(p) for p in live):
            return False
    h.verify_ok(w.restored(w.pid), when="restore killed after its commit point")
    return True


def campaign(h, w, images, pids, timed_kills, prepare=lambda: None, paths=()):
    """Every fault point with both signals, then random timed kills.
    `prepare` runs before each interrupted restore; `paths` must not exist
    after one."""
    live = image_ids(h, images, live_only=True)
    restore_and_verify(h, w, images, "before the faults")
    kill_restored(h, pids)
    # How long a restore takes, from its start to its exit: the random kills
    # fall inside it.
    prepare()
    t0 = time.monotonic()
    rc, _ = interrupted_restore(h, images)
    duration = time.monotonic() - t0
    check_eq(rc, 0, "a plain restore")
    kill_restored(h, pids)

    def after_fault(what, cryo_pid):
        check_nothing_left(h, pids, cryo_pid, what, paths if cryo_pid > 0 else ())
        restore_and_verify(h, w, images, "after " + what)
        kill_restored(h, pids)

    for point in POINTS:
        for name, sig in SIGNALS:
            what = "restore killed (SIG%s) at %s" % (name, point)
            prepare()
            rc, cryo_pid = interrupted_restore(h, images, env={"CRYO_RESTORE_FAULT_POINT": "%s:%s" % (point, name)})
            check_eq(rc, -sig, "%s: cryo's exit status (the point must be reached)" % what)
            if point == POINTS[-1] and sig == signal.SIGKILL:
                # The last step before the commit: the tree died with cryo,
                # and the timed kills below must not take it for released.
                check(not committed(h, w, live), "%s: the tree is taken for released" % what)
            after_fault(what, cryo_pid)
    # Between the janitor's "done" and the release only SIGKILL ends cryo
    # (the others are ignored from there on): the tree dies with cryo, and
    # the janitor, which sees it die, removes what the restore made.
    what = "restore killed (SIGKILL) between the janitor's done and the release"
    prepare()
    rc, cryo_pid = interrupted_restore(h, images, env={"CRYO_RESTORE_FAULT_POINT": "janitor-done:KILL"})
    check_eq(rc, -signal.SIGKILL, "%s: cryo's exit status (the point must be reached)" % what)
    check(not committed(h, w, live), "%s: the tree is taken for released" % what)
    after_fault(what, cryo_pid)
    rnd = random.Random(8)
    outcomes = {"killed": 0, "done first": 0, "killed after the commit": 0}
    for i in range(timed_kills):
        name, sig = SIGNALS[i % 2]
        delay = rnd.uniform(0, duration)
        what = "restore killed (SIG%s) after %.3f s" % (name, delay)
        prepare()
        rc, cryo_pid = interrupted_restore(h, images, kill_after=delay, sig=sig)
        released = rc == 0 or (rc == -signal.SIGKILL and committed(h, w, live))
        if rc == 0:  # it was done already: what it made stays
            outcomes["done first"] += 1
        elif released:
            # Killed between its commit point and its exit (SIGINT waits there
            # until cryo has reported): the tree runs, whole and right.
            outcomes["killed after the commit"] += 1
        else:
            outcomes["killed"] += 1
        if released:
            kill_restored(h, pids)
            cryo_pid = -1
        after_fault(what, cryo_pid)
    h.note("%d fault points x 2 signals; %d timed kills: %r" % (len(POINTS), timed_kills, outcomes))


def dumped(h, name, *args, started=None):
    """Starts workload `name` (or takes the `started` one), dumps it in kill
    mode; returns it, the image and the image's pids, all gone."""
    w = started or h.start_workload(name, *args)
    h.wait_ready(w, timeout=30)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = image_ids(h, images)
    cryotest.wait_pids_gone(pids)
    return w, images, pids


def test_faults_tree(h):
    w, images, pids = dumped(h, "tree")
    campaign(h, w, images, pids, timed_kills=TIMED_KILLS)


def test_faults_threads(h):
    w, images, pids = dumped(h, "threads", "4")
    campaign(h, w, images, pids, timed_kills=TIMED_KILLS)


def test_faults_shm(h):
    with test_shm.ShmObjects() as objects:
        w, objs = test_shm.start_shm(h, objects)
        w, images, pids = dumped(h, "shm", started=w)
        s1 = objs["sysv"][0][0]

        def remove_s1():
            # The restore must create the segment itself, not reuse the one
            # the original (or the last restore) left.
            if s1 in test_shm.sysv_segments():
                subprocess.run(["ipcrm", "-m", str(s1)], check=True, timeout=10)
            check(s1 not in test_shm.sysv_segments(), "segment %d still there" % s1)

        campaign(h, w, images, pids, timed_kills=TIMED_KILLS, prepare=remove_s1)


def test_pid_not_held_after_early_kill(h):
    """The root helper, cloned with the root's pid, goes with cryo even when
    cryo dies before the helper set its parent-death signal (the kill comes
    from the helper itself, first thing after the clone)."""
    w, images, pids = dumped(h, "state")
    rc, cryo_pid = interrupted_restore(h, images, env={"CRYO_RESTORE_FAULT_POINT": "helper-cloned:KILL"})
    check_eq(rc, -signal.SIGKILL, "cryo's exit status")
    check_nothing_left(h, pids, cryo_pid, "restore killed right after the first clone")
    r = restore_and_verify(h, w, images, "after the early kill")
    check_eq(r.pid, w.pid, "restored pid")


def test_faults_fifo(h):
    """FIFOs whose path is gone are made again by the restore (mkfifo): a
    restore that does not complete removes them."""
    w, images, pids = dumped(h, "fifo")
    fifos = [w.path("stream"), w.path("parked")]

    def remove_fifos():
        for p in fifos:
            if os.path.lexists(p):
                os.unlink(p)

    campaign(h, w, images, pids, timed_kills=TIMED_KILLS, prepare=remove_fifos, paths=fifos)


TESTS = [test_pid_not_held_after_early_kill, test_faults_tree, test_faults_threads, test_faults_shm, test_faults_fifo]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
