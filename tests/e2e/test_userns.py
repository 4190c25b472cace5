#!/usr/bin/python3
"""End-to-end tests of trees in a user namespace of their own (the userns
workload under `unshare --user --map-root-user ...`): the namespace's uid and
gid maps and setgroups state are dumped, and the restore makes a fresh user
namespace with them before the namespaces it owns (PID, mount, network, IPC,
UTS), so the restored workload reads the same ids, capabilities, maps and
/proc/self/cgroup, and its namespaces are owned by its user namespace
(the workload checks all of it; the harness checks the same from outside).

- under `--pid --fork --mount-proc` (the workload pid 2 beside a shell):
  kill and rewind with --pidns new, two copies beside the running original,
  the fresh PID namespace owned by the fresh user namespace, pid 1 cryo's
  init; the same with `--net --ipc --uts` too; refused by name: a PID
  namespace not owned by the tree's user namespace (made before it), --lazy;
- `--net --ipc --uts` without a PID namespace;
- without a PID namespace (unshare and the workload dumped together): kill
  and rewind (leave-running, the original killed), and explicit maps
  (`--map-user=1000 --map-group=1000`: uid 1000 inside, no capabilities);
- refused by name, the tree left running: a nested user namespace, the
  workload alone while unshare (outside the tree) is in its namespace, a
  time namespace made before it (`--time -- unshare --user`), a time
  namespace with a PID namespace of the tree's own too (a time namespace
  with the user namespace alone is restored: test_timens.py);
- with a PID namespace: a failed restore (a root with a parent-death signal)
  and one whose cryo is killed leave nothing behind;
- without a PID namespace, restored with --pidns new beside the original.

Run: test_userns.py --cryo PATH --workloads DIR [NAME ...]
"""
import fcntl
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_status, read_text  # noqa: E402
from test_pidns import PIDNS, in_other_pidns, ns_pids  # noqa: E402
from test_taskstate import Cgroups, cgroups_of  # noqa: E402

UNSHARE = "/usr/bin/unshare"
NS_GET_USERNS = 0xb701  # _IO(0xb7, 0x1), ioctl_ns(2)


def children(pid):
    return [int(c) for c in read_text("/proc/%d/task/%d/children" % (pid, pid), "").split()]


def ns_of(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def owner_ino(pid, kind):
    """The inode of the user namespace owning /proc/PID/ns/KIND."""
    fd = os.open("/proc/%d/ns/%s" % (pid, kind), os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def maps(pid):
    return [" ".join(read_text("/proc/%d/%s" % (pid, f), "").split()) for f in ("uid_map", "gid_map", "setgroups")]


def check_outside(pid, kinds, expect_maps, when):
    """From the harness: pid lives in a user namespace of its own with the
    maps, and its namespaces `kinds` are owned by it."""
    check(ns_of(pid, "user") != ns_of(os.getpid(), "user"), "%s: pid %d is in the harness's user namespace"
          % (when, pid))
    check_eq(maps(pid), expect_maps, "%s: uid_map, gid_map, setgroups of pid %d" % (when, pid))
    user = os.stat("/proc/%d/ns/user" % pid).st_ino
    for kind in kinds:
        check(ns_of(pid, kind) != ns_of(os.getpid(), kind), "%s: pid %d is in the harness's %s namespace"
              % (when, pid, kind))
        check_eq(owner_ino(pid, kind), user, "%s: the user namespace owning pid %d's %s namespace" % (when, pid, kind))


def in_cgroups(h, cg, argv):
    """argv started from a shell that first moves itself into a fresh cgroup
    below the harness's in the memory and pids hierarchies (those mounted
    here): (argv, {hierarchy: cgroup path})."""
    mine = cgroups_of(os.getpid())
    placed = {}
    moves = []
    for hier in ("memory", "pids"):
        if hier not in cg.mounts or hier not in mine:
            continue
        path = cg.make(hier, mine[hier].rstrip("/") + "/cryo-userns-%d-%d" % (os.getpid(), h.counter))
        placed[hier] = path
        moves.append("echo $$ > %s/cgroup.procs" % cg.dir(hier, path))
    check(placed, "no memory or pids cgroup hierarchy is mounted here")
    return ["/bin/sh", "-c", "; ".join(moves) + '; exec "$@"', "sh"] + argv, placed


def start_behind_shell(h, name, argv, ctl, when):
    """Start argv (an unshare command line ending in `sh -c 'setsid WORKLOAD
    CTL ... & wait'`), wait at most 20 s for the workload to write CTL/ready:
    (unshare's Workload, the shell's pid, the workload's Workload with its
    host pid), checked by the workload itself."""
    u = h.start(name, argv, ctl)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(u.pid):
            fail("the workload did not get ready: %s" % u.stderr())
        time.sleep(0.01)
    sh = children(u.pid)[0]
    host = children(sh)[0]
    h.tracked_pids += [sh, host]
    w = cryotest.Workload(name, ctl, host, None, u.argv)
    h.verify_ok(w, when=when)
    return u, sh, w


def start_pidns(h, flags=(), cg=None):
    """`unshare --user --map-root-user --pid --fork --mount-proc FLAGS sh -c
    'setsid userns CTL & wait'`: (unshare's Workload, the workload's, with its
    host pid). The workload is pid 2, beside the shell (pid 1, which a
    restore into a new PID namespace replaces with its init)."""
    ctl = h.mkdir("userns")
    argv = [UNSHARE, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"] + list(flags) + \
        ["--", "/bin/sh", "-c", "setsid %s %s & wait" % (h.workload_path("userns"), ctl)]
    if cg is not None:
        argv, _ = in_cgroups(h, cg, argv)
    u, _, w = start_behind_shell(h, "userns", argv, ctl, "of the original")
    check_eq(read_text(os.path.join(ctl, "ready")).strip(), "2", "the workload's pid inside its namespace")
    return u, w


ROOT_MAPS = ["0 0 1", "0 0 1", "deny"]


def pidns_round(h, flags, leave_running, attached=False):
    """The workload (pid 2 beside unshare's shell, pid 1) dumped alone,
    killed (or left running, checked, then its namespace ended by killing
    the shell), restored with --pidns new: pid 2 again, in a fresh PID and
    mount namespace owned by a fresh user namespace with the maps, its parent
    pid 1, cryo's init (the workload checks its ids, capabilities, maps,
    getpid/getppid/NSpid and the namespaces its user namespace owns)."""
    kinds = ["pid", "mnt"] + [f.lstrip("-") for f in flags]
    u, w = start_pidns(h, flags)
    check_outside(w.pid, kinds, ROOT_MAPS, "original")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=leave_running)
    sh = cryotest.proc_stat(w.pid)["ppid"] if leave_running else None
    if leave_running:
        h.verify_ok(w, when="of the original after dump --leave-running")
        os.kill(sh, 9)  # pid 1: the kernel kills every process of its namespace
    status = h.wait_exit(u.pid)
    if not leave_running:
        check_eq(status, ("exit", 0), "unshare's status once its shell's child was killed by the dump")
    h.reap_orphans()
    show = h.show_json(images)
    for feature in ("user-ns", "pid-ns"):
        check(feature in show["features"], "the image lists the feature " + feature)
    r = h.restore(images, detach=not attached, extra=PIDNS)
    check_eq(ns_pids(r.pid), [r.pid, 2], "NSpid of the restored workload (host pid, 2 inside)")
    check_outside(r.pid, kinds, ROOT_MAPS, "restored")
    init = cryotest.proc_stat(r.pid)["ppid"]
    check_eq(ns_pids(init)[1:], [1], "the restored workload's parent is pid 1 of its namespace")
    check_eq(ns_of(init, "pid"), ns_of(r.pid, "pid"), "the init lives in the workload's PID namespace")
    check_eq(ns_of(init, "user"), ns_of(r.pid, "user"), "the init lives in the workload's user namespace")
    check_eq(ns_of(init, "mnt"), ns_of(r.pid, "mnt"), "the init lives in the workload's mount namespace")
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    if attached:  # cryo waits for the init, and ends as the root did
        res = h.cryo_result(r)
        check_eq(res.rc, 0, "attached cryo restore --pidns new once the workload exited 0\n" + res.describe())
        return
    check_eq(h.wait_exit(init, timeout=20), ("exit", 0), "the init's status once the workload exited 0")


def test_pidns_kill(h):
    """`--user --map-root-user --pid --fork --mount-proc`: kill-mode dump,
    restore with --pidns new."""
    pidns_round(h, [], leave_running=False)


def test_pidns_rewind(h):
    """The same, dump --leave-running: the original runs on, then its
    namespace ends; the image restores the workload as it was (cryo
    attached: its status is the root's)."""
    pidns_round(h, [], leave_running=True, attached=True)


def test_pidns_net_ipc_uts(h):
    """`--user --map-root-user --pid --fork --mount-proc --net --ipc --uts`:
    every namespace of the copy owned by its fresh user namespace (the
    workload sets its host name after the restore)."""
    pidns_round(h, ["--net", "--ipc", "--uts"], leave_running=False)


def test_pidns_beside(h):
    """Two copies of the image restored with --pidns new while the original
    runs (each with a control directory of its own, bind-mounted in its
    mount namespace): three workloads with pid 2 in three PID namespaces,
    each owned by its own user namespace, all verifying themselves."""
    u, w = start_pidns(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    copies = []
    for i in (1, 2):
        r = h.restore(images, detach=True, extra=PIDNS)
        check_eq(ns_pids(r.pid), [r.pid, 2], "NSpid of copy %d" % i)
        own = h.mkdir("userns-copy%d" % i)
        p = subprocess.run(["nsenter", "-t", str(r.pid), "-m", "mount", "--bind", own, w.ctl],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        check_eq(p.returncode, 0, "bind mount in copy %d's mount namespace: %s" % (i, p.stdout.decode(errors="replace")))
        check_outside(r.pid, ["pid", "mnt"], ROOT_MAPS, "copy %d" % i)
        copies.append((cryotest.Workload("userns", own, r.pid, None, w.argv), cryotest.proc_stat(r.pid)["ppid"]))
    users = {ns_of(pid, "user") for pid in [w.pid] + [c.pid for c, _ in copies]}
    check_eq(len(users), 3, "user namespaces of the original and its two copies")
    for i, (c, _) in enumerate(copies):
        h.verify_ok(c, when="of copy %d" % (i + 1))
    h.verify_ok(w, when="of the original beside its copies")
    for i, (c, init) in enumerate(copies):
        h.verify_ok(c, exit=True, when="of copy %d (exit)" % (i + 1))
        check_eq(h.wait_exit(init, timeout=20), ("exit", 0), "copy %d's init once it exited 0" % (i + 1))
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


def test_pidns_refusals(h):
    """Refused by name at dump, the tree left running: a PID namespace made
    before the user namespace (`unshare --pid --fork --mount-proc unshare
    --user ...`: owned by cryo's, which a restore would not make again as
    it was), a time namespace with them (`--time` too), and --lazy for an
    image whose PID namespace its user namespace owns (refused at restore,
    nothing left behind)."""
    ctl = h.mkdir("userns")
    argv = [UNSHARE, "--pid", "--fork", "--mount-proc", "--", "/bin/sh", "-c",
            "%s --user --map-root-user -- setsid %s %s & wait" % (UNSHARE, h.workload_path("userns"), ctl)]
    u, sh, w = start_behind_shell(h, "userns", argv, ctl, "of the original")
    h.dump_refused(w.pid, ["is owned by user namespace", "made before the user namespace"])
    h.verify_ok(w, when="of the original after the refused dump")
    os.kill(sh, 9)
    h.wait_exit(u.pid)
    h.reap_orphans()
    u, w = start_pidns(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    r = h.restore(images, detach=True, expect_ok=False, extra=PIDNS + ["--lazy"])
    check(r.rc != 0 and "--lazy and a tree whose PID namespace was owned by its own user namespace" in r.stderr,
          "--lazy refused by name: %s" % r.describe())
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")
    # A time namespace with the PID namespace, both owned by the user
    # namespace: not restored together yet.
    u, w = start_pidns(h, ["--time"])
    h.dump_refused(w.pid, ["owns a time namespace (time:[", "besides its user namespace and its PID namespace"])
    h.verify_ok(w, exit=True, when="of the original after the refused dump (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


PDEATH = ("import ctypes, os, sys, time\n"
          "ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM\n"
          "open(sys.argv[1] + '/ready', 'w').write(str(os.getpid()))\n"
          "time.sleep(600)\n")


def wait_new_pidns_gone(h, before, when):
    """Every process of the harness's in a PID namespace not in `before`
    (the restore's) gone within 10 s."""
    deadline = time.monotonic() + 10
    while in_other_pidns(h) - before:
        check(time.monotonic() < deadline, "%s: left in a new pid namespace after 10 s: %s"
              % (when, sorted(in_other_pidns(h) - before)))
        h.reap_orphans(everything=True)
        time.sleep(0.01)


def test_pidns_failures(h):
    """A restore into a PID namespace owned by the fresh user namespace that
    fails leaves nothing: refused inside the engine (a root with a
    parent-death signal, which the hand-over to pid 1 would fire: named), and
    cryo killed (SIGKILL) once the root's helper is made (pid 1 dies with
    it, and the namespace with pid 1)."""
    ctl = h.mkdir("pdeath")
    u = h.start("pdeath", [UNSHARE, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--", "/bin/sh",
                           "-c", 'setsid "$@" & wait', "sh", sys.executable, "-c", PDEATH, ctl], ctl)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(u.pid):
            fail("the workload did not get ready: %s" % u.stderr())
        time.sleep(0.01)
    sh = children(u.pid)[0]
    py = children(sh)[0]
    h.tracked_pids += [sh, py]
    check_eq(proc_status(py)["SigCgt"] is not None, True, "the python workload runs")
    images = h.mkdir("img")
    h.dump(py, images, leave_running=True)
    before = in_other_pidns(h)
    r = h.restore(images, detach=True, expect_ok=False, extra=PIDNS)
    check(r.rc not in (0, "TIMEOUT") and "has parent-death signal 15" in r.stderr,
          "a root with a parent-death signal refused by name: %s" % r.describe())
    wait_new_pidns_gone(h, before, "after the refused restore")
    check(pid_alive(py), "the original runs on")
    os.kill(sh, 9)
    h.wait_exit(u.pid)
    h.reap_orphans()

    u, w = start_pidns(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    before = in_other_pidns(h)
    log = os.path.join(h.mkdir("killed"), "cryo.err")
    with open(log, "wb") as err:
        p = subprocess.Popen([h.cryo, "restore", "-D", images, "-d"] + PIDNS, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, close_fds=True,
                             env=dict(os.environ, CRYO_RESTORE_FAULT_POINT="helper-cloned"))
    h.cryo_popens.append(p)
    deadline = time.monotonic() + 20
    while not in_other_pidns(h) - before:
        check(p.poll() is None, "cryo exited before the namespace was made: %s" % read_text(log))
        check(time.monotonic() < deadline, "no new pid namespace within 20s")
        time.sleep(0.01)
    time.sleep(0.2)
    p.kill()
    p.wait(timeout=10)
    wait_new_pidns_gone(h, before, "after cryo was killed")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


def test_net_ipc_uts(h):
    """`--user --map-root-user --net --ipc --uts --fork`: every fresh
    namespace is owned by the fresh user namespace (the workload sets its
    host name in its own UTS namespace after the restore)."""
    kinds = ["net", "ipc", "uts"]
    u, w = start_plain(h, ["--map-root-user", "--net", "--ipc", "--uts"])
    check_outside(w.pid, kinds, ROOT_MAPS, "original")
    images = h.dump_unshared(u, w.pid)
    r = h.restore(images, detach=True, expected_pid=u.pid)
    check_outside(w.pid, kinds, ROOT_MAPS, "after restore")
    check_eq(ns_of(r.pid, "net"), ns_of(w.pid, "net"), "restored unshare and its child share the network namespace")
    rw = w.restored(w.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_cgroupns_userns(h):
    """`--user --map-root-user --cgroup --fork`, started in cgroups of its
    own: the cgroup namespace's root is those cgroups; restored, the workload
    reads the same /proc/self/cgroup (its root: "/") and is in the same
    cgroups as seen from outside; the namespace is owned by its user
    namespace."""
    cg = Cgroups(h)
    try:
        ctl = h.mkdir("userns")
        argv, placed = in_cgroups(h, cg, [UNSHARE, "--user", "--map-root-user", "--cgroup", "--fork", "--",
                                          "/usr/bin/setsid", h.workload_path("userns"), ctl])
        u, w = h.start_under_unshare("userns", argv, ctl)
        h.verify_ok(w, when="of the original")
        before = cgroups_of(w.pid)
        check(all(p == "/" for p in parse_inside(w.pid).values()), "the workload reads its cgroups as roots")
        check_outside(w.pid, ["cgroup"], ROOT_MAPS, "original")
        images = h.dump_unshared(u, w.pid)
        h.check_feature(images, "cgroup-ns")
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check_outside(w.pid, ["cgroup"], ROOT_MAPS, "after restore")
        check_eq(cgroups_of(w.pid), before, "the restored workload's cgroups, seen from outside")
        check(all(p == "/" for p in parse_inside(w.pid).values()), "the restored workload reads its cgroups as roots")
        rw = w.restored(w.pid)
        h.verify_ok(rw, when="after restore")
        h.verify_ok(rw, exit=True, when="after restore (exit)")
        check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")
    finally:
        cg.remove()


def test_cgroupns_plain(h):
    """`unshare --cgroup --fork` (no user namespace), unshare and the
    workload in cgroups of their own: kill and restore with their pids."""
    cg = Cgroups(h)
    try:
        ctl = h.mkdir("userns")
        argv, placed = in_cgroups(h, cg, [UNSHARE, "--cgroup", "--fork", "--", "/usr/bin/setsid",
                                          h.workload_path("userns"), ctl])
        u, w = h.start_under_unshare("userns", argv, ctl)
        h.verify_ok(w, when="of the original")
        before = cgroups_of(w.pid)
        for hier, path in placed.items():
            check_eq(before[hier], path, "the original's cgroup in %s" % hier)
        check(ns_of(w.pid, "cgroup") != ns_of(os.getpid(), "cgroup"), "the workload has a cgroup namespace of its own")
        images = h.dump_unshared(u, w.pid)
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check_eq(cgroups_of(w.pid), before, "the restored workload's cgroups, seen from outside")
        check_eq(ns_of(r.pid, "cgroup"), ns_of(w.pid, "cgroup"), "restored unshare and its child share the namespace")
        check(ns_of(w.pid, "cgroup") != ns_of(os.getpid(), "cgroup"), "the restored workload's own cgroup namespace")
        check_eq(parse_inside(w.pid), {hier: "/" for hier in parse_inside(w.pid)}, "cgroups read inside")
        rw = w.restored(w.pid)
        h.verify_ok(rw, when="after restore")
        h.verify_ok(rw, exit=True, when="after restore (exit)")
        check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")
    finally:
        cg.remove()


def parse_inside(pid):
    """/proc/PID/cgroup as the process reads it (in its cgroup namespace):
    nsenter into it to read it."""
    import subprocess
    p = subprocess.run(["nsenter", "-t", str(pid), "-C", "cat", "/proc/%d/cgroup" % pid], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    check_eq(p.returncode, 0, "nsenter -C: %s" % p.stdout.decode(errors="replace"))
    out = {}
    for line in p.stdout.decode().splitlines():
        _, hier, path = line.split(":", 2)
        if hier in ("memory", "pids"):
            out[hier] = path
    return out


def start_plain(h, map_args):
    """`unshare --user MAP_ARGS --fork -- setsid userns CTL`: unshare and the
    workload both live in the user namespace (dumped together)."""
    ctl = h.mkdir("userns")
    u, w = h.start_under_unshare("userns", [UNSHARE, "--user"] + list(map_args) + ["--fork", "--", "/usr/bin/setsid",
                                 h.workload_path("userns"), ctl], ctl)
    h.verify_ok(w, when="of the original")
    return u, w


def plain_round(h, map_args, expect_maps, leave_running):
    u, w = start_plain(h, map_args)
    check_outside(w.pid, [], expect_maps, "original")
    check_eq(ns_of(u.pid, "user"), ns_of(w.pid, "user"), "unshare and its child share the user namespace")
    images = h.dump_unshared(u, w, leave_running=leave_running)
    r = h.restore(images, detach=True, expected_pid=u.pid)
    check_outside(w.pid, [], expect_maps, "restored workload")
    check_eq(ns_of(r.pid, "user"), ns_of(w.pid, "user"), "restored unshare and its child share the user namespace")
    rw = w.restored(w.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(r.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_plain_kill(h):
    """Without a PID namespace: unshare and the workload, killed by the dump
    and restored with their pids in a fresh user namespace."""
    plain_round(h, ["--map-root-user"], ROOT_MAPS, leave_running=False)


def test_plain_rewind(h):
    """Leave-running; the original goes on, is checked, then killed; the
    restore is back in a user namespace with the maps."""
    plain_round(h, ["--map-root-user"], ROOT_MAPS, leave_running=True)


def test_plain_pidns_new_beside(h):
    """Without a PID namespace of its own (unshare and the workload),
    restored with --pidns new beside the running original: the copy's user
    namespace is a fresh one with the maps, its PID namespace and the mount
    namespace with that namespace's /proc are cryo's making (owned by cryo's
    user namespace, as the ones the tree shared with cryo were: the
    workload checks which of its namespaces its user namespace owns); the
    original and the copy verify themselves."""
    u, w = start_plain(h, ["--map-root-user"])
    images = h.mkdir("img")
    h.dump(u.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    r = h.restore(images, detach=True, extra=PIDNS)
    check_eq(ns_pids(r.pid), [r.pid, u.pid], "NSpid of unshare's copy")
    kids = children(r.pid)
    check_eq(len(kids), 1, "children of unshare's copy")
    h.tracked_pids.append(kids[0])
    check_eq(ns_pids(kids[0]), [kids[0], w.pid], "NSpid of the workload's copy")
    own = h.mkdir("userns-copy")
    p = subprocess.run(["nsenter", "-t", str(kids[0]), "-m", "mount", "--bind", own, w.ctl],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    check_eq(p.returncode, 0, "bind mount in the copy's mount namespace: %s" % p.stdout.decode(errors="replace"))
    copy = cryotest.Workload("userns", own, kids[0], None, w.argv)
    check_outside(kids[0], [], ROOT_MAPS, "copy")
    check(ns_of(kids[0], "user") != ns_of(w.pid, "user"), "the copy has a user namespace of its own")
    for kind in ("pid", "mnt"):
        check(owner_ino(kids[0], kind) != os.stat("/proc/%d/ns/user" % kids[0]).st_ino,
              "the copy's %s namespace is not owned by its user namespace" % kind)
    h.verify_ok(copy, when="of the copy")
    h.verify_ok(w, when="of the original beside its copy")
    init = cryotest.proc_stat(r.pid)["ppid"]
    h.verify_ok(copy, exit=True, when="of the copy (exit)")
    check_eq(h.wait_exit(init, timeout=20), ("exit", 0), "the copy's init once unshare's copy exited 0")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_explicit_maps(h):
    """`--map-user=1000 --map-group=1000`: cryo's uid 0 is 1000 inside; the
    restored workload has uid and groups 1000 inside and no capabilities."""
    u, w = start_plain(h, ["--map-user=1000", "--map-group=1000"])
    check_eq(read_text(os.path.join(w.ctl, "ready")) is not None, True, "ready")
    status = cryotest.proc_status(w.pid)
    check_eq(status["CapEff"], "0000000000000000", "the original's capabilities (uid 1000 inside after exec)")
    images = h.dump_unshared(u, w.pid)
    h.restore(images, detach=True, expected_pid=u.pid)
    check_outside(w.pid, [], ["1000 0 1", "1000 0 1", "deny"], "restored workload")
    rw = w.restored(w.pid)
    h.verify_ok(rw, when="after restore")
    check_eq(cryotest.proc_status(w.pid)["CapEff"], "0000000000000000", "the restored workload's capabilities")
    h.verify_ok(rw, exit=True, when="after restore (exit)")


def test_refusals(h):
    """Refused by name, the tree left running: the workload alone (unshare,
    outside the tree, shares its user namespace), a user namespace nested in
    another one, a time namespace made before the user namespace."""
    u, w = start_plain(h, ["--map-root-user"])
    h.dump_refused(w.pid, ["pid %d, outside the tree, lives in the tree's user namespace" % u.pid])
    h.verify_ok(w, when="after the refused dump")
    h.cleanup_one(w.pid)
    h.wait_exit(u)
    ctl = h.mkdir("nested")
    u2, w2 = h.start_under_unshare("userns", [UNSHARE, "--user", "--map-root-user", "--fork", "--", UNSHARE, "--user",
                                   "--map-root-user", "--fork", "--", "/usr/bin/setsid", h.workload_path("userns"),
                                   ctl], ctl)
    inner = children(u2.pid)[0]
    h.tracked_pids.append(inner)
    h.dump_refused(inner, ["is nested below another user namespace than cryo's"])
    h.verify_ok(w2, when="after the refused dump of a nested namespace")
    h.cleanup_one(w2.pid)
    h.wait_exit(u2)
    # A time namespace made before the user namespace (owned by cryo's): the
    # restore would make it in the tree's.
    ctl3 = h.mkdir("timefirst")
    w3 = h.start("userns", [UNSHARE, "--time", "--", UNSHARE, "--user", "--map-root-user", "--",
                            h.workload_path("userns"), ctl3], ctl3)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl3, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(w3.pid):
            fail("the workload did not get ready: %s" % w3.stderr())
        time.sleep(0.01)
    h.verify_ok(w3, when="of the workload in a time namespace made before its user namespace")
    h.dump_refused(w3.pid, ["the tree's time namespace time:[", "not by the tree's user:["])
    h.verify_ok(w3, when="after the refused dump of a time namespace made before the user namespace")
    h.cleanup_one(w3.pid)


def test_threads(h):
    """A process with threads in the tree's user namespace. Its threads are
    cloned with their thread ids (clone3 set_tid), which takes CAP_SYS_ADMIN
    in the user namespace owning the PID namespace, after the process joined
    the tree's user namespace (setns into a user namespace takes a single-
    threaded caller): sharing cryo's PID namespace it is refused at dump, by
    name (a restore would fail, after a kill-mode dump killed the tree); in a
    PID namespace its user namespace owns, it is restored."""
    ctl = h.mkdir("threads-plain")
    u, w = h.start_under_unshare("threads", [UNSHARE, "--user", "--map-root-user", "--fork", "--", "/usr/bin/setsid",
                                 h.workload_path("threads"), ctl, "4"], ctl)
    h.verify_ok(w, when="of the original")
    h.dump_refused(u.pid, ["pid %d" % w.pid, "5 threads", "the tree's user namespace",
                           "unshare --user --pid"])
    h.verify_ok(w, when="after the refused dump")
    h.cleanup_one(w.pid)
    h.wait_exit(u)
    h.reap_orphans()
    # In a PID namespace its user namespace owns: kill-mode dump, restore.
    ctl = h.mkdir("threads-pidns")
    u, _, w = start_behind_shell(h, "threads", [UNSHARE, "--user", "--map-root-user", "--pid", "--fork",
                                 "--mount-proc", "--", "/bin/sh", "-c", "setsid %s %s 4 & wait"
                                 % (h.workload_path("threads"), ctl)], ctl, "of the original in its PID namespace")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.wait_exit(u.pid)
    h.reap_orphans()
    r = h.restore(images, detach=True, extra=PIDNS)
    check_eq(len(os.listdir("/proc/%d/task" % r.pid)), 5, "threads of the restored process")
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.cleanup_one(r.pid)


TESTS = [
    test_pidns_kill,
    test_pidns_rewind,
    test_pidns_net_ipc_uts,
    test_pidns_beside,
    test_pidns_refusals,
    test_pidns_failures,
    test_net_ipc_uts,
    test_plain_kill,
    test_plain_rewind,
    test_explicit_maps,
    test_plain_pidns_new_beside,
    test_refusals,
    test_threads,
    test_cgroupns_userns,
    test_cgroupns_plain,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
