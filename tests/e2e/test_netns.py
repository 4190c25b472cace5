#!/usr/bin/python3
"""End-to-end tests of trees that own their network namespace (the netns.py
workload under `unshare --net --fork`): lo up, its addresses (IPv4 with a
labelled secondary, IPv6 nodad), a route of the main table, changed
sysctls, an nftables table and TCP listeners, all verified by the workload
itself after a restore in kill and rewind (beside the running original,
--pidns new) modes, and from outside (a client in the namespace, started
with nsenter, reaches the listener again); the restored tree is in a fresh
namespace. Then the refusals, by name, before anything is written.

Run: test_netns.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq, fail, pid_alive, proc_stat, read_text  # noqa: E402
from test_pidns import restore_copy  # noqa: E402
from test_run import cryo_run, wait_ready_inside  # noqa: E402

CLIENT = ("import socket,sys\n"
          "c = socket.create_connection((sys.argv[1], 7777), timeout=5)\n"
          "c.sendall(b'outside\\n')\n"
          "sys.stdout.write(c.recv(100).decode())\n")


def ns_of(pid, kind="net"):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def in_ns(pid, argv, stdin=None):
    """Runs argv in the network namespace of pid; (status, output)."""
    p = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "--"] + argv, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace")


def client_reaches(pid, w_pid, when):
    """A client outside the tree, in its namespace, talks to both listeners."""
    for host in ("10.77.0.1", "fd77::1"):
        rc, out = in_ns(pid, [PYTHON, "-c", CLIENT, host])
        check_eq((rc, out), (0, "pong %d outside\n" % w_pid), "%s: a client of %s:7777" % (when, host))


def start(h):
    """`unshare --net --fork netns.py CTL`: (unshare's pid, the workload)."""
    ctl = h.mkdir("netns")
    u = h.start("netns", ["/usr/bin/unshare", "--net", "--fork", "--", PYTHON,
                          h.workload_path("netns.py"), ctl], ctl)
    deadline = time.monotonic() + 20
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(u.pid):
            fail("the workload under unshare did not get ready: %s" % u.stderr())
        time.sleep(0.01)
    child = int(read_text(os.path.join(ctl, "ready")).strip())
    h.tracked_pids.append(child)
    w = cryotest.Workload("netns", ctl, child, None, u.argv)
    h.verify_ok(w, when="of the original")
    check(ns_of(child) != ns_of(os.getpid()), "the workload is in the host's network namespace")
    client_reaches(child, child, "original")
    return u, w


def test_netns_kill(h):
    u, w = start(h)
    images = h.mkdir("img")
    h.dump(u.pid, images)
    h.reap_original(u)
    check_eq(h.wait_exit(w.pid), ("signal", 9), "the workload after the kill-mode dump")
    h.reap_orphans()
    for i in range(2):  # and again from the same image
        when = "after restore %d" % (i + 1)
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check(ns_of(r.pid) != ns_of(os.getpid()), "%s: the tree is in the host's network namespace" % when)
        check_eq(ns_of(w.pid), ns_of(r.pid), "%s: unshare and its child share the fresh namespace" % when)
        rw = w.restored(w.pid)
        h.verify_ok(rw, when=when)
        client_reaches(w.pid, w.pid, when)
        h.verify_ok(rw, exit=True, when=when + " (exit)")
        check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0 " + when)


def test_netns_rewind_beside_original(h):
    """The copy's namespace is fresh: its listeners bind the same addresses
    and port beside the original's."""
    u, w = start(h)
    images = h.mkdir("img")
    h.dump(u.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    ou = cryotest.Workload("netns", w.ctl, u.pid, None, u.argv)
    copy, r, init = restore_copy(h, ou, images)
    check(pid_alive(w.pid), "the original runs beside its copy")
    check(ns_of(r.pid) != ns_of(w.pid), "the copy shares the original's network namespace")
    h.verify_ok(copy, when="of the copy")
    client_reaches(r.pid, w.pid, "copy")  # the pid the copy's workload has inside its namespace
    h.verify_ok(w, when="of the original beside its copy")
    client_reaches(w.pid, w.pid, "original beside its copy")
    h.verify_ok(copy, exit=True, when="of the copy (exit)")
    check_eq(h.wait_exit(init), ("exit", 0), "the copy's init status once its tree exited 0")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


def test_netns_cryo_run(h):
    """`cryo run --ns pid,mnt,net`: the program's own network namespace is
    dumped from inside its PID namespace and restored with --pidns new."""
    ctl = h.mkdir("run")
    w, init = cryo_run(h, [PYTHON, h.workload_path("netns.py"), ctl], ns="pid,mnt,net", ctl=ctl)
    wait_ready_inside(h, w)
    h.verify_ok(w, when="of the original")
    client_reaches(w.pid, 2, "original")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    # An init cannot die by its own signals: 128+SIGKILL, its program's end.
    check_eq(h.wait_exit(init), ("exit", 128 + signal.SIGKILL), "init status once its program was dumped")
    r = h.restore(images, extra=["--pidns", "new"])
    cinit = proc_stat(r.pid)["ppid"]
    copy = w.restored(r.pid)
    check(ns_of(r.pid) != ns_of(os.getpid()), "the copy is in the host's network namespace")
    h.verify_ok(copy, when="after restore")
    client_reaches(r.pid, 2, "after restore")
    h.verify_ok(copy, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(cinit), ("exit", 0), "the copy's init status once it exited 0")


# (setup run in the namespace, a part of the refusal, undo)
REFUSALS = [
    (["ip", "link", "add", "cryoveth0", "type", "veth", "peer", "name", "cryoveth1"],
     "(kind veth): links other than lo are not restored", ["ip", "link", "del", "cryoveth0"]),
    (["ip", "rule", "add", "from", "10.77.0.0/24", "table", "100"], "policy routing rule",
     ["ip", "rule", "del", "from", "10.77.0.0/24", "table", "100"]),
    (["ip", "route", "add", "10.79.0.0/16", "dev", "lo", "table", "100"], "route 10.79.0.0/16 dev lo (table 100",
     ["ip", "route", "del", "10.79.0.0/16", "dev", "lo", "table", "100"]),
    (["ip", "route", "add", "10.80.0.0/16", "dev", "lo", "mtu", "1400"], "has metrics",
     ["ip", "route", "del", "10.80.0.0/16", "dev", "lo"]),
    (["tc", "qdisc", "add", "dev", "lo", "root", "pfifo"], "tc qdisc pfifo on link lo",
     ["tc", "qdisc", "del", "dev", "lo", "root"]),
    (["ip", "neigh", "add", "10.77.0.5", "lladdr", "00:11:22:33:44:55", "dev", "lo", "nud", "permanent"],
     "permanent neighbour entry for ", ["ip", "neigh", "flush", "dev", "lo", "nud", "permanent"]),
    (["ip", "addr", "add", "10.81.0.1/24", "dev", "lo", "valid_lft", "1000", "preferred_lft", "1000"],
     "address 10.81.0.1/24 on link lo has a finite lifetime", ["ip", "addr", "del", "10.81.0.1/24", "dev", "lo"]),
]


def test_netns_refusals(h):
    """Each thing the namespace may hold that cryo does not restore is
    refused by name before anything is written; once it is undone, the dump
    goes through (the workload is left running)."""
    u, w = start(h)
    for setup, name, undo in REFUSALS:
        rc, out = in_ns(w.pid, setup)
        check_eq(rc, 0, "%s: %s" % (" ".join(setup), out))
        h.dump_refused(u.pid, ["the tree's network namespace", name])
        rc, out = in_ns(w.pid, undo)
        check_eq(rc, 0, "%s: %s" % (" ".join(undo), out))
    h.verify_ok(w, when="after the refused dumps")
    # A process outside the tree in the namespace: unshare, the workload's parent.
    h.dump_refused(w.pid, ["pid %d, outside the tree, lives in the tree's network namespace" % u.pid])
    # A nested namespace: a tree whose processes live in two.
    nested = h.start("nested", ["/usr/bin/unshare", "--net", "--fork", "--", "/usr/bin/unshare", "--net", "--fork",
                                "--", "/bin/sleep", "100"])
    deadline = time.monotonic() + 10
    while len(h._descendants(nested.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    h.dump_refused(nested.pid, ["network namespace", "a tree is restored only with one network namespace"])
    nested.popen.kill()
    nested.popen.wait()
    images = h.mkdir("img")
    h.dump(u.pid, images, leave_running=True)
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


TESTS = [
    test_netns_kill,
    test_netns_rewind_beside_original,
    test_netns_cryo_run,
    test_netns_refusals,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
