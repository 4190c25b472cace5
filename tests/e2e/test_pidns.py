#!/usr/bin/python3
"""End-to-end tests of `cryo restore --pidns new`: a restore into a fresh PID
namespace (and mount namespace with its own /proc), with the image's pids
inside it, beside the original and beside other copies; its init (pid 1, part
of cryo) forwards signals to the restored root and exits with its status.

A copy runs with the original's control directory path: the test bind-mounts
a directory of the copy's own over that path inside the copy's mount namespace
(nsenter -m), so that the original and each copy are verified separately.

Run: test_pidns.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_stat, proc_status, read_text  # noqa: E402

PIDNS = ["--pidns", "new"]


def ns_pids(host_pid):
    """NSpid of a process seen from the host: [host pid, pid in its namespace]."""
    st = proc_status(host_pid)
    check(st is not None, "pid %d is gone" % host_pid)
    return [int(x) for x in st["NSpid"].split()]


def restore_copy(h, w, images, detach=True, own_ctl=True, extra=()):
    """Restore a copy of w into a new PID namespace; with own_ctl its control
    directory is a fresh one, bind-mounted over w's inside the copy's mount
    namespace. `extra`: more restore arguments. Returns (copy Workload with
    the host pid, Restored, init host pid)."""
    r = h.restore(images, detach=detach, extra=PIDNS + list(extra))
    check_eq(ns_pids(r.pid), [r.pid, w.pid], "NSpid of the copy (host pid, the image's pid inside)")
    init = proc_stat(r.pid)["ppid"]
    check_eq(ns_pids(init)[1:], [1], "the copy's parent is pid 1 of its namespace")
    if detach:
        check("host pid %d" % r.pid in r.result.message, "cryo names the copy's host pid: %s" % r.result.message)
    if not own_ctl:
        copy = w.restored(r.pid, r.cryo)
        return copy, r, init
    own = h.mkdir(w.name + "-copy")
    p = subprocess.run(["nsenter", "-t", str(r.pid), "-m", "mount", "--bind", own, w.ctl],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    check_eq(p.returncode, 0, "bind mount in the copy's mount namespace: %s" % p.stdout.decode(errors="replace"))
    copy = cryotest.Workload(w.name, own, r.pid, None, w.argv)
    copy.cryo = r.cryo
    return copy, r, init


def verify_counting(h, w, exit=False, when=""):
    """Verify the counter workload once it has counted since its previous
    verify (it counts every 200 ms; a copy verified at once may not have).
    An exit verify is asked once, a second after (as test_counter_continues)."""
    if exit:
        time.sleep(1.0)
        h.verify_ok(w, exit=True, when=when)
        return
    for _ in range(20):
        line = h.verify(w, exit=exit)
        if "did not increase" not in line:
            break
        time.sleep(0.25)
    check(line.startswith("OK "), "%s verify %s: %s" % (w.name, when, line))


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and proc_stat(pid)["state"] != "Z":
        if time.monotonic() > deadline:
            fail("pid %d still running %.0fs later" % (pid, timeout))
        time.sleep(0.01)


def dumped(h, name, *args):
    """Start workload `name`, dump it in kill mode, reap it: (workload, image)."""
    w = h.start_workload(name, *args)
    if name != "sleep":
        h.wait_ready(w, timeout=30)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    return w, images


def test_rewind_beside_original(h):
    """dump --leave-running, then restore --pidns new while the original runs
    with the same pid: both verify themselves, before and after each other."""
    w = h.start_workload("counter")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    copy, r, init = restore_copy(h, w, images)
    check(pid_alive(w.pid), "the original runs beside its copy")
    verify_counting(h, copy, when="copy")
    verify_counting(h, w, when="original beside its copy")
    verify_counting(h, copy, when="copy, again")
    check_eq(proc_stat(w.pid)["ppid"], os.getpid(), "the original's parent")
    h.cleanup_one(r.pid)
    check_eq(h.wait_exit(init), ("exit", 128 + signal.SIGKILL), "init status once the copy was killed")
    verify_counting(h, w, when="original once its copy is gone")


def test_three_copies(h):
    """Three copies of one image at once, each its own namespace."""
    w, images = dumped(h, "counter")
    copies = [restore_copy(h, w, images) for _ in range(3)]
    check_eq(len({c.pid for c, _, _ in copies}), 3, "three host pids")
    for round_ in range(2):
        for i, (c, _, _) in enumerate(copies):
            verify_counting(h, c, when="copy %d, round %d" % (i, round_))
    for c, _, init in copies:
        verify_counting(h, c, exit=True, when="copy exits")
        check_eq(h.wait_exit(init), ("exit", 0), "init status once the copy exited 0")


def ids_inside(host_root, pids):
    """pid -> (ppid, pgid, sid, zombie) as the copy's own /proc shows them
    (reached through /proc/HOST_PID/root, the copy's mount namespace)."""
    out = {}
    for pid in pids:
        txt = read_text("/proc/%d/root/proc/%d/stat" % (host_root, pid))
        check(txt is not None, "pid %d is not in the copy's /proc" % pid)
        f = txt[txt.rindex(")") + 2:].split()
        out[pid] = (int(f[1]), int(f[2]), int(f[3]), f[0] == "Z")
    return out


def test_tree_in_new_pidns(h):
    """A tree with sessions, groups, a zombie and ghosts' ids: restored into a
    new PID namespace, its /proc shows exactly the image's pids (and the
    init), with their parents, groups and sessions, and the tree verifies
    itself (getpid(), /proc/PID and the board inside)."""
    w, images = dumped(h, "tree", "4")
    image = h.show_json(images)["processes"]
    want = {p["pid"]: p for p in image}
    copy, r, init = restore_copy(h, w, images)
    h.verify_ok(copy, when="tree in a new pid namespace")
    listed = sorted(int(n) for n in os.listdir("/proc/%d/root/proc" % r.pid) if n.isdigit())
    check_eq(listed, sorted(set(want) | {1}), "pids in the copy's /proc")
    inside = ids_inside(r.pid, want)
    for pid, p in want.items():
        ppid = 1 if pid == w.pid else p.get("ppid")
        check_eq(inside[pid][:3], (ppid, p.get("pgid"), p.get("sid")), "pid %d: ppid, pgid, sid inside" % pid)
    h.verify_ok(copy, exit=True, when="tree exits")
    check_eq(h.wait_exit(init), ("exit", 0), "init status once the tree's root exited 0")


def test_exit_status_attached(h):
    """Attached: the root's exit status (1, a failed verify) is cryo's."""
    w, images = dumped(h, "state")
    copy, r, init = restore_copy(h, w, images, detach=False, own_ctl=False)
    h.verify_ok(copy, when="after attached restore")
    lay = h.read_layout(w)
    cryotest.poke(r.pid, int(lay["anon_start"], 16) + 4096 * 555 + 8, b"\x01")
    line = h.verify(copy, exit=True)
    check(line.startswith("FAIL"), "verify after the poke: %s" % line)
    res = h.cryo_result(r)
    check_eq(res.rc, 1, "attached cryo restore --pidns new status (root exited 1)\n" + res.describe())
    wait_gone(init)


def test_sigterm_to_cryo_forwarded(h):
    """SIGTERM to an attached cryo goes through the init to the root; cryo
    dies by it as the root did."""
    w, images = dumped(h, "sleep")
    r = h.restore(images, detach=False, extra=PIDNS)
    init = proc_stat(r.pid)["ppid"]
    check_eq(proc_stat(init)["ppid"], r.cryo.pid, "the init is attached cryo's child")
    os.kill(r.cryo.pid, signal.SIGTERM)
    res = h.cryo_result(r)
    check_eq(res.rc, -signal.SIGTERM, "attached cryo status (root died by SIGTERM)\n" + res.describe())
    wait_gone(r.pid)
    wait_gone(init)


def test_sigterm_to_init_forwarded(h):
    """SIGTERM to the init (detached) reaches the root; the init exits 128+15.
    A detached restore whose output is read through pipes returns: the init
    holds none of cryo's stdio."""
    w, images = dumped(h, "sleep")
    pidfile = os.path.join(h.mkdir("pidfile"), "pid")
    try:
        p = subprocess.run([h.cryo, "restore", "-D", images, "-d", "--pidfile", pidfile] + PIDNS,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        fail("cryo restore -d --pidns new with its output in pipes did not return within 30s")
    finally:
        for pid in (read_text(pidfile) or "").split():
            h.tracked_pids.append(int(pid))
            h.tracked_pids.append(proc_stat(int(pid))["ppid"])
    check_eq(p.returncode, 0, "cryo restore status: %s" % p.stderr.decode(errors="replace"))
    root = int(read_text(pidfile))
    init = proc_stat(root)["ppid"]
    check("host pid %d, its init host pid %d" % (root, init) in p.stderr.decode(errors="replace"),
          "cryo names the host pids: %s" % p.stderr)
    os.kill(init, signal.SIGTERM)
    check_eq(h.wait_exit(init), ("exit", 128 + signal.SIGTERM), "init status (root died by SIGTERM)")
    wait_gone(root)


def in_other_pidns(h):
    """The harness's descendants (live) in a PID namespace other than its own."""
    mine = os.readlink("/proc/self/ns/pid")
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                if os.readlink("/proc/%s/ns/pid" % n) != mine and h._is_ours(int(n)):
                    out.append(int(n))
            except OSError:
                pass
    return set(out)


def test_failed_restore_leaves_nothing(h):
    """A restore that fails in the middle of the tree (A1's mapped file changed)
    and one whose cryo is killed (SIGKILL) with the root helper made: the init
    and every process of the namespace are gone."""
    w, images = dumped(h, "tree", "4")
    os.utime(w.path("a1.map"), (1, 1))
    r = h.restore(images, detach=True, expect_ok=False, extra=PIDNS)
    check(r.rc not in (0, "TIMEOUT"), "restore with a changed a1.map: exit status %r\n%s" % (r.rc, r.describe()))
    check("a1.map" in r.message, "the error names a1.map: %s" % r.message)
    check_eq(in_other_pidns(h), set(), "processes left in other pid namespaces")

    # cryo killed while the namespace's init waits after cloning the root
    # (an image that restores).
    w, images = dumped(h, "sleep")
    log = os.path.join(h.mkdir("killed"), "cryo.err")
    with open(log, "wb") as err:
        p = subprocess.Popen([h.cryo, "restore", "-D", images, "-d"] + PIDNS, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, close_fds=True,
                             env=dict(os.environ, CRYO_RESTORE_FAULT_POINT="helper-cloned"))
    h.cryo_popens.append(p)
    deadline = time.monotonic() + 20
    while not in_other_pidns(h):
        check(p.poll() is None, "cryo exited before the namespace was made: %s" % read_text(log))
        check(time.monotonic() < deadline, "no new pid namespace within 20s")
        time.sleep(0.01)
    time.sleep(0.2)
    p.kill()
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while in_other_pidns(h):
        check(time.monotonic() < deadline, "left in a pid namespace 10s after cryo was killed: %s"
              % sorted(in_other_pidns(h)))
        h.reap_orphans(everything=True)
        time.sleep(0.01)


def test_refusals(h):
    """Refused by name with --pidns new, before anything is made: a tree in
    a session led from outside it; --shell-job."""
    ctl = h.mkdir("outside")
    # A process whose session and group are the harness's (not setsid).
    p = subprocess.Popen(["/bin/sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=ctl, close_fds=True)
    h.tracked_pids.append(p.pid)
    h.popens[p.pid] = p
    h.wait_state(p.pid, "S", comm="sleep")
    images = h.mkdir("img")
    h.dump(p.pid, images, leave_running=True)
    r = h.restore(images, detach=True, expect_ok=False, extra=PIDNS)
    check(r.rc == 1 and "session %d is led from outside the image" % os.getsid(0) in r.message,
          "refusal of a session led from outside:\n%s" % r.describe())
    check_eq(in_other_pidns(h), set(), "nothing left")
    r = h.run_cryo(["restore", "-D", images, "--shell-job", "-d"] + PIDNS)
    check(r.rc == 1 and "--shell-job and --pidns new" in r.message, "refusal of --shell-job:\n%s" % r.describe())
    r = h.run_cryo(["restore", "-D", images, "--pidns", "old"])
    check(r.rc == 2 and "--pidns" in r.message, "--pidns takes only 'new':\n%s" % r.describe())


TESTS = [
    test_rewind_beside_original,
    test_three_copies,
    test_tree_in_new_pidns,
    test_exit_status_attached,
    test_sigterm_to_cryo_forwarded,
    test_sigterm_to_init_forwarded,
    test_failed_restore_leaves_nothing,
    test_refusals,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
