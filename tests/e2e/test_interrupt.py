#!/usr/bin/python3
"""Interrupting or killing cryo never harms the original (faultlib.py).

Deterministic fault points (CRYO_FAULT_POINT) spread over whole dumps of a
tree, a multi-threaded process and a process with 64 MiB, in both modes,
with SIGKILL and SIGINT; timed kills; the image left behind; a restore
interrupted or killed; the privilege check.

Run: test_interrupt.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
import faultlib  # noqa: E402
from cryotest import check, check_eq, fail, read_text  # noqa: E402

POINTS_PER_CASE = 12


def campaign(h, kind, points=POINTS_PER_CASE):
    w = faultlib.start(h, kind)
    for leave_running in (True, False):
        mode = "leave-running" if leave_running else "kill"
        images = os.path.join(h.tmp_root, "img-count")
        before = faultlib.snapshot(w.pid)
        total = faultlib.count_points(h, w, images, leave_running)
        h.note("%s, %s mode: %d fault points" % (kind, mode, total))
        # (The counting dump of kill mode killed it: go on with the restored tree.)
        w = faultlib.check_after(h, w, before, images, cryotest.CryoResult([], 0, "", "", ""), "KILL",
                                 leave_running, "%s after the counting dump" % kind)
        for sig in ("KILL", "INT"):
            for point in faultlib.spread(total, points):
                what = "%s, %s mode, SIG%s at fault point %d of %d" % (kind, mode, sig, point, total)
                w = faultlib.interrupted_dump(h, w, os.path.join(h.tmp_root, "img-%d" % point), leave_running,
                                              sig, what, point=point)
    h.verify_ok(w, exit=True, when="at the end")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status at the end")


def test_fault_points_tree(h):
    campaign(h, "tree")


def test_fault_points_threads(h):
    campaign(h, "threads")


def test_fault_points_64mib(h):
    campaign(h, "mem64", points=4)


def test_killed_during_cow_copy(h):
    """cryo killed (SIGKILL, then SIGINT) while it copies the memory of a
    running tree copy-on-write (after the resume, mem/cow_copy.h): its
    userfaultfd dies with it, the kernel lifts the write protection and wakes
    the writers. dirtier rewrites its 64 MiB without pause, so a page left
    protected would stop it for good: it must go on writing (its verify
    answers) with no VMA registered, untraced, with its own masks; an
    interrupted dump leaves no image."""
    w = h.start_workload("dirtier", "64", "4000", "nochurn")
    h.wait_ready(w, timeout=60)
    images = os.path.join(h.tmp_root, "img-count")
    total = faultlib.count_points(h, w, images, True)
    shutil.rmtree(images, ignore_errors=True)
    during = 0
    for sig in ("KILL", "INT"):
        for point in range(max(1, total - 90), total + 1, 6):
            images = os.path.join(h.tmp_root, "img-cow-%d" % point)
            log = os.path.join(h.tmp_root, "cow-%s-%d.log" % (sig, point))
            before = faultlib.snapshot(w.pid)
            r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--leave-running", "--log-file", log],
                           log=False, env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": sig}, tag="dump-cow")
            text = read_text(log, "")
            what = "SIG%s at fault point %d of %d" % (sig, point, total)
            if r.rc != 0 and "tree resumed after" in text and "copied after the resume" not in text:
                during += 1
            w = faultlib.check_after(h, w, before, images, r, sig, True, what)
            registered = [line for line in read_text("/proc/%d/smaps" % w.pid, "").splitlines()
                          if line.startswith("VmFlags:") and (" uw" in line or " um" in line)]
            check(not registered, "%s: the original keeps VMAs registered with a userfaultfd" % what)
    check(during >= 2, "no fault point fell into the copy-on-write copy (%d points)" % total)
    h.note("%d dumps interrupted during the copy-on-write copy" % during)
    h.verify_ok(w, exit=True, when="at the end")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status at the end")


def test_fault_points_registers(h):
    """After dumps killed at every kind of point, the avx512 workload's
    vector, mask and general registers are still the ones it loaded."""
    w = h.start_workload("avx512")
    h.wait_ready(w)
    images = os.path.join(h.tmp_root, "img-count")
    total = faultlib.count_points(h, w, images, True)
    shutil.rmtree(images)
    for point in faultlib.spread(total, 10):
        before = faultlib.snapshot(w.pid)
        r = faultlib.fault_dump(h, w, images, True, point, "KILL")
        problem = faultlib.free_of_cryo(before)
        check(problem is None, "SIGKILL at fault point %d: %s\n%s" % (point, problem, r.describe()))
        shutil.rmtree(images, ignore_errors=True)
    os.kill(w.pid, signal.SIGUSR1)
    check_eq(h.wait_exit(w), ("exit", 0), "avx512 exit status (%s)" % read_text(w.path("result"), "").strip())


def test_fault_points_terminal(h):
    """The bytes waiting in a pty survive cryo killed at any point of a dump:
    cryo takes them out of the terminal to read them, and a child of its own
    puts them back whatever happens to cryo.  The pty workload's first verify
    checks the exact bytes in flight, after every dump."""
    w = h.start_workload("pty")
    h.wait_ready(w)
    images = os.path.join(h.tmp_root, "img-count")
    total = faultlib.count_points(h, w, images, True)
    shutil.rmtree(images)
    h.note("%d fault points" % total)
    for point in range(1, total + 1):
        before = faultlib.snapshot(w.pid)
        r = faultlib.fault_dump(h, w, images, True, point, "KILL")
        problem = faultlib.free_of_cryo(before)
        check(problem is None, "SIGKILL at fault point %d: %s\n%s" % (point, problem, r.describe()))
        shutil.rmtree(images, ignore_errors=True)
    line = h.verify_ok(w, when="after %d dumps killed at every fault point" % total)
    check("C-OK" in line, "pty verify: %s" % line)


def test_timed_signals(h):
    """SIGKILL, SIGINT, SIGTERM, SIGHUP at random moments of dumps of a tree."""
    rng = random.Random(8)
    w = faultlib.start(h, "tree")
    t0 = time.monotonic()
    faultlib.dump(h, w, os.path.join(h.tmp_root, "img-time"), True, {})
    length = time.monotonic() - t0
    shutil.rmtree(os.path.join(h.tmp_root, "img-time"))
    for i in range(12):
        sig = rng.choice(["KILL", "INT", "TERM", "HUP"])
        leave_running = rng.random() < 0.5
        delay = rng.uniform(0, length)
        what = "SIG%s after %.1f ms of a %s dump" % (sig, delay * 1e3, "--leave-running" if leave_running else "kill-mode")
        w = faultlib.interrupted_dump(h, w, os.path.join(h.tmp_root, "img-timed-%d" % i), leave_running, sig,
                                      what, delay=delay)
    h.verify_ok(w, exit=True, when="at the end")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status at the end")


def test_interrupt_keeps_the_users_files(h):
    """An interrupted dump into a directory that existed removes only what it
    wrote: the directory and the user's file stay."""
    w = h.start_workload("counter")
    h.wait_ready(w)
    images = h.mkdir("img-existing")
    with open(os.path.join(images, "notes.txt"), "w") as f:
        f.write("mine\n")
    total = faultlib.count_points(h, w, os.path.join(h.tmp_root, "img-count"), True)
    r = faultlib.fault_dump(h, w, images, True, total - 3, "INT")
    check(r.rc == -signal.SIGINT, "cryo should die by SIGINT, rc %s\n%s" % (r.rc, r.describe()))
    check_eq(sorted(os.listdir(images)), ["notes.txt"], "files left in the image directory")
    h.verify_ok(w)


def test_killed_dump_over_an_old_image_is_incomplete(h):
    """A dump killed over a complete older image: killed before it writes
    anything (the audit and the remote calls come first), the old image
    stays whole; killed once it writes, `cryo show` and `cryo restore` say
    the image is incomplete (its marker), never that it is the old one."""
    w = h.start_workload("counter")
    h.wait_ready(w)
    images = os.path.join(h.tmp_root, "img-old")
    h.dump(w.pid, images, leave_running=True)
    total = faultlib.count_points(h, w, os.path.join(h.tmp_root, "img-count"), True)
    marked = 0
    for point in range(total - 1, 0, -1):
        r = faultlib.fault_dump(h, w, images, True, point, "KILL")
        check_eq(r.rc, -signal.SIGKILL, "cryo's status")
        state = faultlib.image_state(h, images)
        check(state in ("complete", "incomplete"), "image after a kill at fault point %d: %s" % (point, state))
        if state == "complete":
            if marked:
                break  # before the first file: the old image, untouched
            continue
        marked += 1
        rr = h.restore(images, expect_ok=False)
        check(rr.rc != 0 and faultlib.INCOMPLETE in rr.stderr, "restore of an incomplete image:\n%s" % rr.describe())
        h.dump(w.pid, images, leave_running=True)  # a complete old image again
    check(marked > 0, "no fault point between the marker and the inventory")
    h.verify_ok(w)


def test_interrupted_restore_leaves_nothing(h):
    """A restore killed or interrupted at fault points leaves no process of
    the image behind; the image then restores."""
    w = faultlib.start(h, "tree")
    images = os.path.join(h.tmp_root, "img")
    h.dump(w.pid, images)
    h.reap_original(w)
    pids = [p["pid"] for p in h.show_json(images)["processes"]]
    cryotest.wait_pids_gone(pids)
    # The image is restored many times and every restored tree appends to its
    # shared log before it is killed: the program's own change, allowed by name.
    allow = ["--allow-changed", w.path("shared.log")]
    r = h.run_cryo(["restore", "-D", images, "--detach"] + allow, env={"CRYO_FAULT_POINT": "0"}, tag="restore-count")
    check(r.rc == 0, "counting restore failed\n%s" % r.describe())
    total = int(r.stderr.split("fault points passed: ")[1].split()[0]) if "fault points passed" in r.stderr else 0
    h.tracked_pids.append(w.pid)
    faultlib.kill_tree(h, w.pid)
    check(total > 10, "fault points of a restore: %d" % total)
    for sig in ("KILL", "INT"):
        for point in faultlib.spread(total, 5):
            r = h.run_cryo(["restore", "-D", images, "--detach"] + allow, tag="restore-fault",
                           env=faultlib.run_env({"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": sig}))
            # Killed before its release, the restore's janitor kills the tree it made: after cryo exited.
            faultlib.wait_janitors_done("SIG%s at fault point %d" % (sig, point))
            if cryotest.pid_alive(w.pid):
                # Only a restore that got to its release leaves the tree, whole and running.
                h.verify_ok(w.restored(w.pid), when="restored before SIG%s at fault point %d" % (sig, point))
                faultlib.kill_tree(h, w.pid)
            cryotest.wait_pids_gone(pids)
    rs = h.restore(images, detach=True, expected_pid=w.pid, extra=allow)
    h.verify_ok(w.restored(rs.pid), when="after the interrupted restores")


def test_not_root(h):
    """Without the privileges cryo says so first, by name."""
    w = h.start_workload("counter")
    h.wait_ready(w)
    images = os.path.join(h.tmp_root, "img-nobody")
    for cmd in (["dump", "-t", str(w.pid), "-D", images], ["restore", "-D", images]):
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.cryo] + cmd,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        check(p.returncode != 0, "cryo %s as nobody succeeded" % cmd[0])
        check("cryo must run as root or with CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE (see cryo check)" in p.stderr,
              "cryo %s as nobody: %r" % (cmd[0], p.stderr))
    check(not os.path.exists(images), "cryo dump as nobody created %s" % images)
    # `cryo check` says which capabilities are missing.
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.cryo, "check"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    caps = [line for line in p.stdout.splitlines() if " capabilities " in line]
    check(len(caps) == 1 and not caps[0].startswith("ok") and "CAP_SYS_PTRACE no" in caps[0]
          and "CAP_CHECKPOINT_RESTORE no" in caps[0], "cryo check as nobody: %r" % caps)
    h.verify_ok(w)


if __name__ == "__main__":
    sys.exit(cryotest.main([
        test_not_root,
        test_interrupt_keeps_the_users_files,
        test_killed_dump_over_an_old_image_is_incomplete,
        test_fault_points_registers,
        test_fault_points_terminal,
        test_fault_points_tree,
        test_fault_points_threads,
        test_fault_points_64mib,
        test_timed_signals,
        test_interrupted_restore_leaves_nothing,
        test_killed_during_cow_copy,
    ]))
