#!/usr/bin/python3
"""End-to-end tests of trees that own their mount namespace (the mntns.py
workload under `unshare --mount --fork`): a tmpfs of its own with files (one
held open at an offset, one mapped shared, a sparse one, a symbolic link,
owners, modes and times), made a shared mount, a read-only bind mount of a
host directory, a bind of a directory of the tmpfs inside it, and its
working directory in the tmpfs; all verified by the workload itself (from
/proc/self/mountinfo and the files) after a restore in kill, leave-running
and rewind (beside the running original, --pidns new) modes. What the
original writes in its tmpfs after a --leave-running dump is not in the
copy. The restored tree is in a fresh mount namespace and nothing of it
shows in the host's. Then the same under `unshare --pid --mount --fork
--mount-proc` (dumped from its PID namespace, restored with --pidns new),
and the refusals, by name, before anything is written.

Run: test_mntns.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, read_text  # noqa: E402
from test_pidns import PIDNS, ns_pids, restore_copy  # noqa: E402

PYTHON = "/usr/bin/python3"


def ns_of(pid):
    return os.readlink("/proc/%d/ns/mnt" % pid)


def make_base(h):
    base = h.mkdir("mnt")
    for d in ("t", "ro", "src", "x"):
        os.mkdir(os.path.join(base, d))
    with open(os.path.join(base, "src", "hello"), "w") as f:
        f.write("hello from the host\n")
    return base


def children(pid):
    return [int(c) for c in read_text("/proc/%d/task/%d/children" % (pid, pid), "").split()]


def check_outside(pid, base, when):
    """The process is in a mount namespace of its own; its mounts are not
    the host's."""
    check(ns_of(pid) != ns_of(os.getpid()), "%s: pid %d is in the host's mount namespace" % (when, pid))
    for d in ("t", "ro"):
        check(not os.path.ismount(os.path.join(base, d)), "%s: %s/%s is a mount in the host's namespace"
              % (when, base, d))
    check(not os.listdir(os.path.join(base, "t")), "%s: the tmpfs content shows in the host's %s/t" % (when, base))


def start(h, args=()):
    """`unshare --mount --fork mntns.py CTL BASE ARGS`: (unshare's pid, the
    workload, BASE)."""
    base = make_base(h)
    ctl = h.mkdir("mntns")
    u, w = h.start_under_unshare("mntns", ["/usr/bin/unshare", "--mount", "--fork", "--", PYTHON,
                          h.workload_path("mntns.py"), ctl, base] + list(args), ctl)
    child = w.pid
    h.verify_ok(w, when="of the original")
    check_outside(child, base, "original")
    return u, w, base


def ask_write(h, w):
    """The workload changes its tmpfs ("write")."""
    result = w.path("result")
    if os.path.exists(result):
        os.unlink(result)
    with open(w.path("verify.tmp"), "w") as f:
        f.write("write\n")
    os.rename(w.path("verify.tmp"), w.path("verify"))
    deadline = time.monotonic() + 20
    while not (read_text(result) or "").endswith("\n"):
        check(time.monotonic() < deadline and pid_alive(w.pid), "no answer to write: %s" % w.stderr())
        time.sleep(0.01)
    check(read_text(result).startswith("OK wrote"), "write: %s" % read_text(result))


def restore_verify_exit(h, u, w, base, images, when):
    r = h.restore(images, detach=True, expected_pid=u.pid)
    check_outside(r.pid, base, when)
    check_eq(ns_of(w.pid), ns_of(r.pid), "%s: unshare and its child share the fresh namespace" % when)
    rw = w.restored(w.pid)
    line = h.verify_ok(rw, when=when)
    check("gen 0 " in line, "%s: the tmpfs is as at the dump: %s" % (when, line))
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0 " + when)


def test_mntns_kill(h):
    u, w, base = start(h)
    # `cryo check -t` agrees with the dump (it reads the tree from inside its
    # mount namespace: the cwd in the tree's tmpfs is reachable only there).
    r = h.run_cryo(["check", "-t", str(u.pid)], tag="check-t")
    check(r.rc == 0 and "can be checkpointed" in r.stdout, "check -t of the tree:\n%s" % r.describe())
    images = h.dump_unshared(u, w.pid)
    show = h.show_json(images)
    check("mount-ns" in str(show), "the image lists the feature mount-ns")
    check("snapshot-hardlinks" in str(show), "the image lists the feature snapshot-hardlinks")
    links = [e for e in show["snapshot"] if e.get("link_of")]
    check_eq([(e["path"], e["link_of"]) for e in links], [(base + "/t/linked", base + "/t/d/linked2")],
             "the hard link entries of the image")
    for i in range(2):  # and again from the same image: a fresh namespace each time
        restore_verify_exit(h, u, w, base, images, "after restore %d" % (i + 1))
        h.reap_orphans()


def test_mntns_leave_running(h):
    """What the original writes after the dump is not in the restored tmpfs."""
    u, w, base = start(h)
    images = h.mkdir("img")
    h.dump(u.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    ask_write(h, w)
    line = h.verify_ok(w, when="of the original after it wrote")
    check("gen 1 " in line, "the original's tmpfs changed: %s" % line)
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")
    restore_verify_exit(h, u, w, base, images, "after restore")


def test_mntns_rewind_beside_original(h):
    """A copy restored beside the running original (--pidns new): its tmpfs is
    the image's (rolled back: what the original wrote since is not there),
    the original's is untouched."""
    u, w, base = start(h)
    images = h.mkdir("img")
    h.dump(u.pid, images, leave_running=True)
    ask_write(h, w)
    ou = cryotest.Workload("mntns", w.ctl, u.pid, None, u.argv)
    copy, r, init = restore_copy(h, ou, images)
    check(pid_alive(w.pid), "the original runs beside its copy")
    check(ns_of(r.pid) != ns_of(w.pid), "the copy shares the original's mount namespace")
    line = h.verify_ok(copy, when="of the copy")
    check("gen 0 " in line, "the copy's tmpfs is the image's: %s" % line)
    line = h.verify_ok(w, when="of the original beside its copy")
    check("gen 1 " in line, "the original's tmpfs is its own: %s" % line)
    check_outside(w.pid, base, "original beside its copy")
    h.verify_ok(copy, exit=True, when="of the copy (exit)")
    check_eq(h.wait_exit(init), ("exit", 0), "the copy's init status once its tree exited 0")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


def test_mntns_pidns_mount_proc(h):
    """`unshare --pid --mount --fork --mount-proc`: the tree (pid 2, beside a
    shell as pid 1, in a session of its own) has its own /proc and its own mounts; dumped from inside
    its PID namespace, restored with --pidns new."""
    base = make_base(h)
    ctl = h.mkdir("mntns-pidns")
    u = h.start("mntns", ["/usr/bin/unshare", "--pid", "--mount", "--fork", "--mount-proc", "--", "/bin/sh", "-c",
                          "setsid %s %s %s %s & wait" % (PYTHON, h.workload_path("mntns.py"), ctl, base)], ctl)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(u.pid):
            fail("the workload did not get ready: %s" % u.stderr())
        time.sleep(0.01)
    check_eq(read_text(os.path.join(ctl, "ready")).strip(), "2", "the workload's pid inside its namespace")
    sh = children(u.pid)[0]
    host = children(sh)[0]
    h.tracked_pids += [sh, host]
    w = cryotest.Workload("mntns", ctl, host, None, u.argv)
    h.verify_ok(w, when="of the original")
    images = h.mkdir("img")
    h.dump(host, images)
    h.wait_exit(u.pid)  # the shell (pid 1) ended once the workload was killed, and with it unshare
    h.reap_orphans()
    r = h.restore(images, detach=True, extra=PIDNS)
    check_eq(ns_pids(r.pid), [r.pid, 2], "NSpid of the copy")
    init = cryotest.proc_stat(r.pid)["ppid"]
    check_outside(r.pid, base, "after restore")
    rw = w.restored(r.pid)
    line = h.verify_ok(rw, when="after restore")
    check("gen 0 " in line, "after restore: %s" % line)
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(init), ("exit", 0), "the init's status once the tree exited 0")


def mount_points(pid):
    with open("/proc/%d/mountinfo" % pid) as f:
        return [line.split()[4] for line in f]


def test_mntns_absent_mounts(h):
    """Mounts of cryo's namespace the tree's lacks: one the tree unmounted at
    its start (a leaf of the host's table) and one the host mounted after
    the tree's namespace was made (a tmpfs on BASE/x, which the tree's
    private copy never received). The restore unmounts both in the copy it
    starts from: the restored tree sees neither (the workload checks its
    own; the test reads its mountinfo), the host keeps both."""
    leaf = leaf_mount()
    u, w, base = start(h, ["--umount", leaf])
    x = os.path.join(base, "x")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cryo-host-later", x], capture_output=True,
                       text=True, timeout=20)
    check_eq((p.returncode, p.stderr), (0, ""), "mount a tmpfs on %s in the host" % x)
    try:
        check(x not in mount_points(w.pid) and leaf not in mount_points(w.pid), "the tree sees %s or %s" % (x, leaf))
        r = h.run_cryo(["check", "-t", str(u.pid)], tag="check-t")
        check(r.rc == 0 and "can be checkpointed" in r.stdout, "check -t:\n%s" % r.describe())
        images = h.dump_unshared(u, w.pid)
        check("mount-ns-absent" in str(h.show_json(images)), "the image lists the feature mount-ns-absent")
        for i in range(2):
            when = "after restore %d" % (i + 1)
            rr = h.restore(images, detach=True, expected_pid=u.pid)
            seen = mount_points(rr.pid)
            check(x not in seen, "%s: the restored tree sees the host's later mount %s" % (when, x))
            check(leaf not in seen, "%s: the restored tree sees %s, which it had unmounted" % (when, leaf))
            mine = mount_points(os.getpid())
            check(x in mine and leaf in mine, "%s: the host lost %s or %s" % (when, x, leaf))
            rw = w.restored(w.pid)
            h.verify_ok(rw, when=when)
            h.verify_ok(rw, exit=True, when=when + " (exit)")
            check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0 " + when)
            h.reap_orphans()
    finally:
        subprocess.run(["umount", x], capture_output=True, timeout=20)


def leaf_mount():
    """A mount of the harness's namespace with no mount below it."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            points.append(line.split()[4])
    leaves = [p for p in points if p != "/" and not any(q != p and q.startswith(p + "/") for q in points)]
    for prefix in ("/sys/", "/dev/"):
        for p in leaves:
            if p.startswith(prefix):
                return p
    return leaves[0]


def test_mntns_refusals(h):
    """Refused by name, the tree left running: the workload alone (unshare,
    its parent, is in its namespace), a ramfs, an ext4 file system on a loop
    device."""
    u, w, base = start(h)
    h.dump_refused(w.pid, ["pid %d, outside the tree, lives in the tree's mount namespace" % u.pid])
    h.verify_ok(w, when="after the refused dump")
    h.kill_and_reap(u)
    h.reap_orphans()
    cases = [(["--refuse", "ramfs"], ["mount namespace: ", "/x (ramfs none) cannot be made again"])]
    if os.path.exists("/usr/sbin/mkfs.ext4"):
        cases.append((["--refuse", "loop"], ["mount namespace: ", "/x (ext4 /dev/loop", "cannot be made again"]))
    for args, names in cases:
        u, w, base = (None, None, None)
        base = make_base(h)
        if "loop" in args:
            img = os.path.join(base, "ext4.img")
            with open(img, "wb") as f:
                f.truncate(8 << 20)
            subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", img], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        ctl = h.mkdir("mntns-refused")
        u = h.start("mntns", ["/usr/bin/unshare", "--mount", "--fork", "--", PYTHON,
                              h.workload_path("mntns.py"), ctl, base] + args, ctl)
        deadline = time.monotonic() + 20
        while not (read_text(os.path.join(ctl, "ready")) or "").strip():
            if time.monotonic() > deadline or not pid_alive(u.pid):
                fail("the workload (%s) did not get ready: %s" % (args, u.stderr()))
            time.sleep(0.01)
        child = int(read_text(os.path.join(ctl, "ready")).strip())
        h.tracked_pids.append(child)
        w = cryotest.Workload("mntns", ctl, child, None, u.argv)
        h.dump_refused(u.pid, names)
        h.verify_ok(w, when="after the refused dump (%s)" % " ".join(args))
        # `cryo check -t` reads the tree from inside its mount namespace too.
        r = h.run_cryo(["check", "-t", str(u.pid)], tag="check-t")
        check(r.rc == 1, "check -t should find what the dump refuses (%s)\n%s" % (" ".join(args), r.describe()))
        for part in names:
            check(part in r.message + r.stdout, "check -t should name %r: %s" % (part, r.describe()))
        h.verify_ok(w, when="after check -t (%s)" % " ".join(args))
        h.kill_and_reap(u)
        h.reap_orphans()


TESTS = [
    test_mntns_kill,
    test_mntns_leave_running,
    test_mntns_rewind_beside_original,
    test_mntns_pidns_mount_proc,
    test_mntns_refusals,
    test_mntns_absent_mounts,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
