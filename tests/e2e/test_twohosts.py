#!/usr/bin/python3
"""Two hosts on one machine: a TCP server migrates from "host A" to "host B"
with its connection to a client on a third host C, which counts every byte
(src/net/tcp_migrate.cc, restore/resume_hook.cc).

The network, made by the test and deleted after each test: four network
namespaces, a router R with a veth pair to each host (A 10.77.1.2, B
10.77.2.2, C 10.77.3.2, R forwarding between them), and the service's
floating address 10.77.0.10/32 on A, routed by R to whichever host has it.
The server (its listener bound to the floating address too) runs in A
and its client in C; each end sends a stream of 8-byte
counters (0, 1, 2, ...) paced at ~256 KB/s and checks every counter it
reads: a lost, repeated or reordered byte, a reset or an end of stream
writes an `error` file. Each end also notes the longest pause of its sender
and of its receiver (the server's sender pause is the migration's downtime:
from the freeze in A to the resume in B; the client's receiver pause adds
the peer's retransmission timers).

`cryo migrate` runs in A (nsenter), `cryo page-server --restore` in B with
`--before-resume` moving the address (A's address deleted, B's added, R's
route to it replaced): the server resumes in B over the same connection,
and no lock table is left in A or B. Without --before-resume, a page server
without the address refuses the image before acknowledging it, by name:
the server runs on in A untouched, its client too.

Run: test_twohosts.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq, fail, read_text  # noqa: E402
from test_migrate import reap_while  # noqa: E402
from test_tls import Pki  # noqa: E402
from test_tree import tree_ids  # noqa: E402

VIP = "10.77.0.10"
PORT = 7000

STREAM = r"""
import os, socket, struct, sys, threading, time
def note(name, text):
    open(name + ".tmp", "w").write(text)
    os.rename(name + ".tmp", name)
def fatal(role, text):
    open("error-%s" % role, "a").write(text + "\n")
    os._exit(1)
def stream(s, role):
    longest = {"send": 0.0, "recv": 0.0}
    def pause(kind, gap):
        if gap > longest[kind]:
            longest[kind] = gap
            note("pause-%s-%s" % (kind, role), "%.1f" % (gap * 1e3))
    def send():
        n, last = 0, time.monotonic()
        try:
            while True:
                s.sendall(b"".join(struct.pack(">Q", i) for i in range(n, n + 64)))
                n += 64
                now = time.monotonic()
                pause("send", now - last)
                last = now
                time.sleep(0.002)
        except Exception as e:
            fatal(role, "send: %r" % e)
    def recv():
        want, buf, last, noted = 0, b"", time.monotonic(), 0
        while True:
            try:
                d = s.recv(65536)
            except Exception as e:
                fatal(role, "recv: %r" % e)
            if not d:
                fatal(role, "end of stream at %d" % want)
            now = time.monotonic()
            pause("recv", now - last)
            last = now
            buf += d
            k = len(buf) // 8
            for i, (v,) in enumerate(struct.iter_unpack(">Q", buf[:k * 8])):
                if v != want + i:
                    fatal(role, "got %d, expected %d" % (v, want + i))
            want += k
            buf = buf[k * 8:]
            if now - noted > 0.05:
                note("recv-%s" % role, str(want))
                noted = now
    threading.Thread(target=send, daemon=True).start()
    threading.Thread(target=recv, daemon=True).start()
"""

SERVER = STREAM + r"""
l = socket.socket()
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(1)
a, _ = l.accept()
stream(a, "server")  # the listener stays, bound to the floating address
note("ready", "x")
while True:
    time.sleep(0.05)
"""

CLIENT = STREAM + r"""
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.settimeout(None)
stream(c, "client")
note("ready", "x")
while True:
    time.sleep(0.05)
"""


def run(argv, what):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    check_eq((p.returncode, p.stdout.decode(errors="replace")), (0, ""), what + ": " + " ".join(argv))


class Hosts:
    """The four namespaces (R, A, B, C) and their links; all deleted on exit
    (the veth pairs go with them)."""

    def __init__(self):
        tag = "cryoth%d" % os.getpid()
        self.ns = {k: tag + k for k in "RABC"}

    def path(self, k):
        return "/run/netns/" + self.ns[k]

    def ip(self, k, *argv):
        run(["ip", "-n", self.ns[k]] + list(argv), "host %s" % k)

    def __enter__(self):
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)  # a leftover
            run(["ip", "netns", "add", n], "ip netns add")
        try:
            run(["ip", "netns", "exec", self.ns["R"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], "R forwards")
            for i, k in enumerate("ABC", 1):
                self.ip("R", "link", "add", "r" + k, "type", "veth", "peer", "name", "eth0", "netns", self.ns[k])
                self.ip("R", "addr", "add", "10.77.%d.1/24" % i, "dev", "r" + k)
                self.ip("R", "link", "set", "r" + k, "up")
                self.ip(k, "link", "set", "lo", "up")
                self.ip(k, "addr", "add", "10.77.%d.2/24" % i, "dev", "eth0")
                self.ip(k, "link", "set", "eth0", "up")
                self.ip(k, "route", "add", "default", "via", "10.77.%d.1" % i)
            self.ip("A", "addr", "add", VIP + "/32", "dev", "eth0")
            self.ip("R", "route", "add", VIP + "/32", "via", "10.77.1.2")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)

    def move_vip_command(self):
        """The shell command that moves the floating address from A to B."""
        return ("ip -n {A} addr del {vip}/32 dev eth0 && ip -n {B} addr add {vip}/32 dev eth0 && "
                "ip -n {R} route replace {vip}/32 via 10.77.2.2").format(vip=VIP, **self.ns)

    def has_vip(self, k):
        p = subprocess.run(["ip", "-n", self.ns[k], "-4", "-o", "addr", "show", "dev", "eth0"],
                           capture_output=True, text=True, timeout=20)
        return (VIP + "/32") in p.stdout

    def lock_tables(self, k):
        p = subprocess.run(["ip", "netns", "exec", self.ns[k], "nft", "list", "tables"], capture_output=True,
                           text=True, timeout=20)
        check_eq(p.returncode, 0, "nft list tables in %s: %s" % (k, p.stderr))
        return [line.split()[-1] for line in p.stdout.splitlines() if "cryo-lock" in line]

    def netns_of(self, k):
        return os.stat(self.path(k)).st_ino


def nsenter_path(path, argv):
    return ["/usr/bin/nsenter", "--net=" + path, "--"] + list(argv)


def nsenter(hosts, k, argv):
    return nsenter_path(hosts.path(k), argv)


def wait_file(w, name, timeout=20):
    deadline = time.monotonic() + timeout
    while not os.path.exists(w.path(name)):
        if time.monotonic() > deadline:
            fail("%s did not write %s: %s" % (w.name, name, read_text(w.path("stderr"), "")))
        time.sleep(0.02)


def progress(w, role):
    txt = read_text(w.path("recv-" + role), "0").strip()
    return int(txt) if txt.isdigit() else 0


def check_no_error(ends, when):
    for w, role in ends:
        err = read_text(w.path("error-" + role))
        check(err is None, "%s's stream %s: %s" % (role, when, err))


def check_flows(ends, when, more=20000, timeout=30):
    """Every stream goes on by `more` counters (every one checked by its
    reader), none broken (bounded wait)."""
    start = {role: progress(w, role) for w, role in ends}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_no_error(ends, when)
        if all(progress(w, role) >= start[role] + more for w, role in ends):
            return
        time.sleep(0.05)
    fail("streams did not advance %s: %r" % (when, {role: (start[role], progress(w, role)) for w, role in ends}))


def pauses(w, role):
    return {kind: float(read_text(w.path("pause-%s-%s" % (kind, role)), "0") or 0) for kind in ("send", "recv")}


class Cryo:
    """cryo in one of the hosts, in the background."""

    def __init__(self, h, hosts, k, args, tag):
        h.counter += 1
        base = os.path.join(h.tmp_root, "%03d-%s" % (h.counter, tag))
        self.err_path = base + ".err"
        argv = nsenter(hosts, k, [h.cryo] + list(args) + ["--log-file", base + ".log", "-v"])
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      close_fds=True)
        h.popens[self.p.pid] = self.p
        h.tracked_pids.append(self.p.pid)

    def wait(self, timeout=90):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=10)
            fail("cryo did not finish within %ds: %s" % (timeout, self.stderr()))

    def stderr(self):
        return read_text(self.err_path, "")


def page_server(h, hosts, images, k, extra):
    srv = Cryo(h, hosts, "B", ["page-server", "--listen", "10.77.2.2:0", "-D", images, "--restore"] +
               k.psk("psk1") + list(extra), "page-server")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = re.search(r"listening on (\S+)", srv.stderr())
        if m:
            return srv, m.group(1)
        if srv.p.poll() is not None:
            break
        time.sleep(0.02)
    fail("page-server did not start listening: %s" % srv.stderr())


def start_pair(h, hosts):
    """The server in A, its client in C, both streaming."""
    server = h.start("server", nsenter(hosts, "A", [PYTHON, "-c", SERVER, VIP, str(PORT)]))
    time.sleep(0.2)
    client = h.start("client", nsenter(hosts, "C", [PYTHON, "-c", CLIENT, VIP, str(PORT)]))
    wait_file(server, "ready")
    wait_file(client, "ready")
    ends = [(server, "server"), (client, "client")]
    check_flows(ends, "before the migration", more=5000)
    return server, client, ends


def test_migrate_between_hosts(h):
    """The server migrates from A to B, the address follows it
    (--before-resume): the client's connection carries both streams on, no
    byte lost or repeated, no reset; no lock left in either host."""
    k = Pki(h.mkdir("pki"))
    with Hosts() as hosts:
        server, client, ends = start_pair(h, hosts)
        before = tree_ids(server.pid)
        h.tracked_pids.extend(before)
        images = os.path.join(h.mkdir("recv"), "img")
        pidfile = os.path.join(h.tmp_root, "twohosts-%d.pid" % server.pid)
        srv, addr = page_server(h, hosts, images, k, ["--pidfile", pidfile,
                                                      "--before-resume", hosts.move_vip_command()])
        t0 = time.monotonic()
        m = Cryo(h, hosts, "A", ["migrate", "-t", str(server.pid), "--to", addr] + k.psk("psk1"), "migrate")
        h.reap_original(server, timeout=60)
        reap_while(m, before)
        check_eq(m.wait(), 0, "cryo migrate exit status (%s)" % m.stderr())
        check_eq(srv.wait(), 0, "page-server --restore exit status (%s)" % srv.stderr())
        took = time.monotonic() - t0
        check_eq(read_text(pidfile, "").strip(), str(server.pid), "pidfile of page-server --restore")
        check_eq(os.stat("/proc/%d/ns/net" % server.pid).st_ino, hosts.netns_of("B"),
                 "the restored server's network namespace (host B's)")
        check(not hosts.has_vip("A") and hosts.has_vip("B"), "the address did not move from A to B")
        check_eq(hosts.lock_tables("A"), [], "lock tables left in host A")
        check_eq(hosts.lock_tables("B"), [], "lock tables left in host B")
        moved = server.restored(server.pid)
        check_flows([(moved, "server"), (client, "client")], "after the migration to host B")
        sp, cp = pauses(moved, "server"), pauses(client, "client")
        h.note("migration A -> B in %.0f ms (cryo migrate, wall); longest pause of the server's sender (downtime) "
               "%.0f ms, of its receiver %.0f ms; the client's receiver %.0f ms, its sender %.0f ms"
               % (took * 1e3, sp["send"], sp["recv"], cp["recv"], cp["send"]))
        h.cleanup_one(client.pid)
        h.cleanup_one(server.pid)


def test_address_not_here_refused(h):
    """No --before-resume and the address is not on B: the page server
    refuses the image by name before acknowledging it; the server runs on in
    A, untouched, and its stream too; no lock is left."""
    k = Pki(h.mkdir("pki"))
    with Hosts() as hosts:
        server, client, ends = start_pair(h, hosts)
        before = tree_ids(server.pid)
        images = os.path.join(h.mkdir("recv"), "img")
        srv, addr = page_server(h, hosts, images, k, [])
        m = Cryo(h, hosts, "A", ["migrate", "-t", str(server.pid), "--to", addr] + k.psk("psk1"), "migrate")
        check_eq(m.wait(), 1, "cryo migrate into a host without the address (%s)" % m.stderr())
        check_eq(srv.wait(), 1, "page-server without the address (%s)" % srv.stderr())
        must = "TCP %s:%d <-> 10.77.3.2:" % (VIP, PORT)
        check(must in srv.stderr() and "is not on this host" in srv.stderr() and "--before-resume" in srv.stderr(),
              "the page server should name the connection, its address and --before-resume: %s" % srv.stderr())
        check("untouched" in m.stderr(), "migrate should say the tree is untouched: %s" % m.stderr())
        check_eq(tree_ids(server.pid), before, "the server's tree after the refused migration")
        check(not os.path.exists(images), "the refused image was kept in %s" % images)
        check_eq(hosts.lock_tables("A"), [], "lock tables left in host A")
        check_eq(hosts.lock_tables("B"), [], "lock tables left in host B")
        check_flows(ends, "after the refused migration")
        h.cleanup_one(client.pid)
        h.cleanup_one(server.pid)


TESTS = [
    test_migrate_between_hosts,
    test_address_not_here_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
