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
import json
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


def start(h, args=(), setup=None):
    """`unshare --net --fork netns.py CTL ARGS`: (unshare's pid, the workload).
    `setup(pid)`: run once the workload is ready, before it is verified."""
    ctl = h.mkdir("netns")
    u, w = h.start_under_unshare("netns", ["/usr/bin/unshare", "--net", "--fork", "--", PYTHON,
                          h.workload_path("netns.py"), ctl] + list(args), ctl)
    child = w.pid
    if setup:
        setup(child)
    h.verify_ok(w, when="of the original")
    check(ns_of(child) != ns_of(os.getpid()), "the workload is in the host's network namespace")
    client_reaches(child, child, "original")
    return u, w


def test_netns_kill(h):
    u, w = start(h)
    images = h.dump_unshared(u, w.pid)
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
     "has its other end in the tree's namespace too", ["ip", "link", "del", "cryoveth0"]),
    (["ip", "link", "add", "cryobr0", "type", "bridge"],
     "(kind bridge): links other than lo and veth pairs are not restored", ["ip", "link", "del", "cryobr0"]),
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


class PeerNamespaces:
    """Network namespaces made with `ip netns add` for the outside ends of
    veth pairs, deleted on exit."""

    def __init__(self, *suffixes):
        self.names = ["cryov%d%s" % (os.getpid(), s) for s in suffixes]

    def __enter__(self):
        for n in self.names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)  # a leftover
            p = subprocess.run(["ip", "netns", "add", n], capture_output=True, text=True, timeout=20)
            check_eq((p.returncode, p.stderr), (0, ""), "ip netns add " + n)
        return self.names

    def __exit__(self, *exc):
        for n in self.names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)


def ip_n(ns, *argv):
    """`ip -n NS ARGV`: (status, output)."""
    p = subprocess.run(["ip", "-n", ns] + list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace")


def peer_link(ns, peer):
    """The outside end as `ip -j link` shows it in NS (None: there is none)."""
    rc, out = ip_n(ns, "-j", "-d", "link", "show", "dev", peer)
    return json.loads(out)[0] if rc == 0 else None


def wait_peer_gone(ns, peer, when):
    deadline = time.monotonic() + 10
    while peer_link(ns, peer) is not None:
        if time.monotonic() > deadline:
            fail("%s: the veth's outside end %s is still in %s" % (when, peer, ns))
        time.sleep(0.02)


def outside_reaches(ns, peer, w_pid, when):
    """From the peer's namespace, over the veth: the outside end gets its
    address back (its configuration is the user's: the restore makes the
    link only), then a TCP client reaches the tree's listener over it."""
    link = peer_link(ns, peer)
    check(link is not None, "%s: no outside end %s in %s" % (when, peer, ns))
    if when == "original":  # the test's to configure
        check_eq(ip_n(ns, "link", "set", peer, "up"), (0, ""), "ip link set %s up" % peer)
    else:  # given back by the restore
        check("UP" in link.get("flags", []), "%s: the outside end %s is down: %r" % (when, peer, link))
    rc, out = ip_n(ns, "addr", "replace", "10.88.0.2/24", "dev", peer)
    check_eq((rc, out), (0, ""), "%s: ip addr replace on %s" % (when, peer))
    p = subprocess.run(["ip", "netns", "exec", ns, PYTHON, "-c", CLIENT, "10.88.0.1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    check_eq((p.returncode, p.stdout.decode(errors="replace")), (0, "pong %d outside\n" % w_pid),
             "%s: a client of 10.88.0.1:7777 in %s" % (when, ns))


def test_netns_veth(h):
    """A veth pair whose outside end is in a namespace `ip netns add` made:
    the pair dies with the tree's namespace at the kill-mode dump and comes
    back at restore with its outside end in that namespace (found by the
    dump under /run/netns), with its name, MAC and up state; the tree checks
    its end (address, MAC, MTU, up, listener), and a client outside reaches
    it over the veth."""
    peer = "cvp%d" % (os.getpid() % 100000)
    with PeerNamespaces("") as (ns,):
        u, w = start(h, ["--veth", ns, peer])
        outside_reaches(ns, peer, w.pid, "original")
        mac = peer_link(ns, peer)["address"]
        images = h.dump_unshared(u, w.pid)
        wait_peer_gone(ns, peer, "after the kill-mode dump")
        show = h.show_json(images)
        check("net-veth" in json.dumps(show), "the inventory lacks feature net-veth")
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check(ns_of(r.pid) != ns_of(os.getpid()), "the tree is in the host's network namespace")
        link = peer_link(ns, peer)
        check(link is not None and link.get("address") == mac and link["linkinfo"]["info_kind"] == "veth",
              "the outside end after restore: %r (MAC before: %s)" % (link, mac))
        rw = w.restored(w.pid)
        h.verify_ok(rw, when="after restore")
        outside_reaches(ns, peer, w.pid, "after restore")
        client_reaches(w.pid, w.pid, "after restore")
        h.verify_ok(rw, exit=True, when="after restore (exit)")
        check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0")
        wait_peer_gone(ns, peer, "once the restored tree exited")


def test_netns_veth_refusals(h):
    """The outside end's name is taken at restore (the original runs):
    refused by name, nothing made. With --veth-peer-ns another namespace the
    pair is made, then the restore fails (the original's pids are in use):
    the pair it made is deleted before cryo exits."""
    peer = "cvp%d" % (os.getpid() % 100000)
    with PeerNamespaces("", "b") as (ns, other):
        u, w = start(h, ["--veth", ns, peer])
        images = h.mkdir("img")
        h.dump(u.pid, images, leave_running=True)
        r = h.restore(images, expect_ok=False, extra=["--pidns", "new"])
        check(not isinstance(r, cryotest.Restored) and r.rc != 0, "restore beside the original with its veth's "
              "outside end name taken went through")
        check("veth veth0's outside end %s cannot be made in /run/netns/%s: a link of that name exists there"
              % (peer, ns) in r.message, "the refusal should name the veth and its outside end: " + r.message)
        r = h.restore(images, expect_ok=False, extra=["--veth-peer-ns", "/run/netns/" + other])
        check(not isinstance(r, cryotest.Restored) and r.rc != 0, "restore beside the original went through")
        check("in use" in r.message, "the restore should fail on a pid in use: " + r.message)
        check("veth veth0 made with its outside end %s in /run/netns/%s" % (peer, other) in (r.log or ""),
              "the failed restore did not get as far as making the veth:\n" + r.describe())
        check(peer_link(other, peer) is None, "the failed restore left the veth's outside end %s in %s"
              % (peer, other))
        h.verify_ok(w, exit=True, when="of the original (exit)")
        check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status")


def lock_tables(argv_prefix):
    p = subprocess.run(argv_prefix + ["nft", "list", "tables"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20)
    return [t for t in p.stdout.decode(errors="replace").split("\n") if "cryo-lock" in t]


def test_netns_tcp(h):
    """An established TCP connection inside the tree's namespace, over lo
    with both ends in the tree (with a veth to the test's namespace beside
    it). The network lock acts in the tree's namespace at the dump (none is
    left in the host's, nor in the tree's after a leave-running dump), and is
    made again in the fresh one at restore before its links are up, removed
    once the connections are out of repair mode; after a kill and a restore
    the connection carries the workload's numbered lines again, and a
    client outside reaches the listener over the veth. (A connection to a
    peer outside the tree: test_netns_outside_peer.)"""
    peer = "cvp%d" % (os.getpid() % 100000)
    with PeerNamespaces("") as (ns,):
        u, w = start(h, ["--veth", ns, peer, "--tcp"], setup=lambda pid: outside_reaches(ns, peer, pid, "original"))
        images = h.mkdir("img")
        h.dump(u.pid, images, leave_running=True)
        h.verify_ok(w, when="of the original after dump --leave-running")
        check_eq(lock_tables(["nsenter", "--net=/proc/%d/ns/net" % w.pid, "--"]), [],
                 "lock tables left in the tree's namespace after dump --leave-running")
        images = h.dump_unshared(u, w.pid)
        check_eq(lock_tables([]), [], "lock tables in the host's namespace")
        wait_peer_gone(ns, peer, "after the kill-mode dump")
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check_eq(lock_tables(["nsenter", "--net=/proc/%d/ns/net" % r.pid, "--"]), [],
                 "lock tables left in the restored namespace")
        outside_reaches(ns, peer, w.pid, "after restore")
        rw = w.restored(w.pid)
        h.verify_ok(rw, when="after restore")
        h.verify_ok(rw, exit=True, when="after restore (exit)")
        check_eq(h.wait_exit(u.pid), ("exit", 0), "unshare's status once its child exited 0")


def test_netns_outside_peer(h):
    """A tree of its own network namespace (unshare --net --fork) with a
    TCP server whose client is outside the tree, in another namespace,
    across the tree's veth pair; both ends stream numbered counters and
    check every one (test_twohosts.py). Kill-mode dump: the tree's
    namespace, its lock and the veth pair die with the tree, and a token of
    the lock stays in cryo's namespace; the client, which finds no route
    meanwhile, sees no reset and loses no byte; the restore (the token
    taken, the lock made again in the fresh namespace before any link is
    up, then removed) gives the client its connection back, once its end of
    the veth has its address again. The image does not restore twice: the
    second restore is refused by name."""
    from test_twohosts import CLIENT, SERVER, check_flows, nsenter_path, pauses, wait_file
    peer = "cvp%d" % (os.getpid() % 100000)
    with PeerNamespaces("") as (ns,):
        ctl = h.mkdir("tree")
        u = h.start("tree", ["/usr/bin/unshare", "--net", "--fork", "--", PYTHON, "-c", SERVER, "0.0.0.0", "7000"],
                    ctl)
        deadline = time.monotonic() + 20
        while not (read_text("/proc/%d/task/%d/children" % (u.pid, u.pid)) or "").strip():
            if time.monotonic() > deadline or not pid_alive(u.pid):
                fail("unshare did not start its child: %s" % u.stderr())
            time.sleep(0.01)
        child = int(read_text("/proc/%d/task/%d/children" % (u.pid, u.pid)).split()[0])
        h.tracked_pids.append(child)
        server = cryotest.Workload("server", ctl, child, None, u.argv)
        inside = ["nsenter", "--net=/proc/%d/ns/net" % child, "--"]
        for argv in (["ip", "link", "add", "veth0", "netns", str(child), "type", "veth", "peer", "name", peer,
                      "netns", ns],
                     inside + ["ip", "link", "set", "lo", "up"],
                     inside + ["ip", "addr", "add", "10.88.0.1/24", "dev", "veth0"],
                     inside + ["ip", "link", "set", "veth0", "up"],
                     ["ip", "-n", ns, "addr", "add", "10.88.0.2/24", "dev", peer],
                     ["ip", "-n", ns, "link", "set", peer, "up"]):
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            check_eq((p.returncode, p.stdout.decode(errors="replace")), (0, ""), " ".join(argv))
        deadline = time.monotonic() + 20  # the server listens (its namespace's /proc/net/tcp: 7000, LISTEN)
        while ":1B58 00000000:0000 0A" not in (read_text("/proc/%d/net/tcp" % child) or ""):
            if time.monotonic() > deadline:
                fail("the server in the tree's namespace does not listen: %s" % u.stderr())
            time.sleep(0.02)
        client = h.start("client", nsenter_path("/run/netns/" + ns, [PYTHON, "-c", CLIENT, "10.88.0.1", "7000"]))
        wait_file(server, "ready")
        wait_file(client, "ready")
        check_flows([(server, "server"), (client, "client")], "before the dump", more=5000)
        images = h.dump_unshared(u, child, what="the server")
        check_eq(len(lock_tables([])), 1, "the lock's token in the host's namespace after the kill-mode dump")
        wait_peer_gone(ns, peer, "after the kill-mode dump")
        time.sleep(1.0)  # the client goes on sending, into no route
        check_eq(read_text(client.path("error-client")), None, "the client's stream while the tree is checkpointed")
        r = h.restore(images, detach=True, expected_pid=u.pid)
        check_eq(lock_tables([]), [], "lock tables in the host's namespace after the restore")
        check_eq(lock_tables(["nsenter", "--net=/proc/%d/ns/net" % child, "--"]), [],
                 "lock tables left in the restored namespace")
        # The outside end's configuration is the user's (test_netns_veth).
        check_eq(ip_n(ns, "addr", "replace", "10.88.0.2/24", "dev", peer), (0, ""), "ip addr replace on " + peer)
        moved = server.restored(child)
        check_flows([(moved, "server"), (client, "client")], "after the restore")
        sp, cp = pauses(moved, "server"), pauses(client, "client")
        h.note("netns outside peer: longest pause of the server's sender %.0f ms, of the client's receiver %.0f ms"
               % (sp["send"], cp["recv"]))
        h.cleanup_one(child)
        h.cleanup_one(r.pid)
        h.reap_orphans()
        h.cleanup_one(client.pid)
        # The peer went on with the first restore: the image is not restored again.
        rr = h.run_cryo(["restore", "-D", images, "--detach"])
        check(rr.rc != 0 and "peer is outside the tree" in rr.message and "is gone" in rr.message,
              "a second restore should be refused by name: %s" % rr.describe())
        check(not pid_alive(u.pid), "pid %d runs after the refused restore" % u.pid)


# Makes a UDP socket in the harness's namespace, then becomes `unshare
# --net --fork sleep`, whose two processes keep it (inherited).
HOST_SOCKET = ("import os,socket\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "s.bind(('127.0.0.1', 0))\n"
               "os.set_inheritable(s.fileno(), True)\n"
               "os.execv('/usr/bin/unshare', ['unshare', '--net', '--fork', '--', '/bin/sleep', '100'])\n")


def test_netns_foreign_socket(h):
    """A socket made in the host's namespace before the unshare (SIOCGSKNS
    tells its namespace) is refused by name: a restore would make it in the
    tree's fresh namespace."""
    t = h.start("hostsock", [PYTHON, "-c", HOST_SOCKET])
    deadline = time.monotonic() + 10
    while len(h._descendants(t.pid)) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    check(ns_of(t.pid) != ns_of(os.getpid()), "unshare is in the host's network namespace")
    mine = ns_of(os.getpid())[len("net:"):]
    h.dump_refused(t.pid, ["is UDP 127.0.0.1:", "of network namespace net:%s, not of the one the process lives in"
                           % mine])
    t.popen.kill()
    t.popen.wait()


TESTS = [
    test_netns_foreign_socket,
    test_netns_veth,
    test_netns_veth_refusals,
    test_netns_tcp,
    test_netns_outside_peer,
    test_netns_kill,
    test_netns_rewind_beside_original,
    test_netns_cryo_run,
    test_netns_refusals,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
