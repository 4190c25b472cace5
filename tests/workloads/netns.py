#!/usr/bin/python3
"""netns.py: a tree that owns its network namespace, checked by itself.

Usage: unshare --net --fork -- /usr/bin/python3 netns.py CTL_DIR [--veth NETNS PEER] [--tcp]
       [--outside HOST:PORT]

At the start, inside its fresh namespace (ip(8), nft(8), /proc/sys), it
configures: lo up with 10.77.0.1/24, a secondary 10.77.0.9/24 labelled
lo:cryo and fd77::1/64 (nodad); a route 10.78.0.0/16 dev lo metric 7 in the
main table; the sysctls net.ipv4.ip_default_ttl=33, net.core.somaxconn=77,
net.ipv4.conf.lo.arp_ignore=2; an nftables table "inet cryotest" with a
counter rule; then it listens on TCP 10.77.0.1:7777 and [fd77::1]:7777 and
answers "pong PID" to every line a client sends.
With --veth NETNS PEER (NETNS made by `ip netns add`): also a veth pair, veth0
(MAC 02:00:00:88:00:01, MTU 1400, 10.88.0.1/24, up) with its other end
PEER in NETNS, and a listener on 10.88.0.1:7777, checked too.
With --tcp: an established TCP connection over lo, both ends its own
(10.77.0.1:7778); with --outside: one to an echo server outside the tree
(made at the first verify). Each verify sends a numbered line on each and
checks it comes back whole, on the same connection (same local address).
On verify it reads all of this back: the addresses (with their label and
order), lo up, the route, the sysctls (and a new socket's TTL, which is
net.ipv4.ip_default_ttl's), the nft rule, and a connection from itself to
both listeners. Same control protocol as the other workloads (wl_common.h).
"""
import json
import os
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop import poll_verify, write_atomic  # noqa: E402

PORT = 7777
VETH_MAC = "02:00:00:88:00:01"
ARGS = sys.argv[2:]
VETH = ARGS[ARGS.index("--veth") + 1:ARGS.index("--veth") + 3] if "--veth" in ARGS else []
HOSTS = ["10.77.0.1", "fd77::1"] + (["10.88.0.1"] if VETH else [])
TCP = "--tcp" in ARGS
OUTSIDE = ARGS[ARGS.index("--outside") + 1].rsplit(":", 1) if "--outside" in ARGS else None


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


class Connections:
    """The established connections, each (client end, server end or None,
    the client's local address when made)."""

    def __init__(self):
        self.conns = []
        if TCP:
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.bind(("10.77.0.1", PORT + 1))
            lst.listen(1)
            c = socket.create_connection(("10.77.0.1", PORT + 1), timeout=5)
            s, _ = lst.accept()
            lst.close()
            self.conns.append(("lo", c, s, c.getsockname()))

    def check(self, counter, check):
        if OUTSIDE and not any(name == "outside" for name, _, _, _ in self.conns):
            c = socket.create_connection((OUTSIDE[0], int(OUTSIDE[1])), timeout=5)
            self.conns.append(("outside", c, None, c.getsockname()))
        for name, c, s, local in self.conns:
            c.settimeout(10)
            check(c.getsockname() == local, "%s: local address %r, was %r" % (name, c.getsockname(), local))
            msg = b"%s %d\n" % (name.encode(), counter)
            c.sendall(msg)
            if s is not None:  # both ends ours: the server end echoes
                s.settimeout(10)
                s.sendall(recv_exact(s, len(msg)))
            back = recv_exact(c, len(msg))
            check(back == msg, "%s: sent %r, back %r" % (name, msg, back))
SYSCTLS = {"net/ipv4/ip_default_ttl": "33", "net/core/somaxconn": "77", "net/ipv4/conf/lo/arp_ignore": "2"}
# As `ip addr` lists them: IPv4 oldest first, IPv6 newest first.
ADDRS = [("127.0.0.1", 8), ("10.77.0.1", 24), ("10.77.0.9", 24), ("fd77::1", 64), ("::1", 128)]
NFT = """table inet cryotest {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 9 counter drop
  }
}
"""


def run(*argv, stdin=None):
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True).stdout


def setup():
    run("ip", "link", "set", "lo", "up")
    run("ip", "addr", "add", "10.77.0.1/24", "dev", "lo")
    run("ip", "addr", "add", "10.77.0.9/24", "dev", "lo", "label", "lo:cryo")
    run("ip", "-6", "addr", "add", "fd77::1/64", "dev", "lo", "nodad")
    run("ip", "route", "add", "10.78.0.0/16", "dev", "lo", "metric", "7")
    for path, value in SYSCTLS.items():
        with open("/proc/sys/" + path, "w") as f:
            f.write(value)
    run("nft", "-f", "-", stdin=NFT)
    if VETH:
        run("ip", "link", "add", "veth0", "address", VETH_MAC, "mtu", "1400", "type", "veth", "peer", "name", VETH[1],
            "netns", VETH[0])
        run("ip", "addr", "add", "10.88.0.1/24", "dev", "veth0")
        run("ip", "link", "set", "veth0", "up")


def read_state(check):
    addrs = []
    for link in json.loads(run("ip", "-j", "addr", "show", "dev", "lo")):
        check("UP" in link.get("flags", []), "lo is not up: %r" % link.get("flags"))
        for a in link.get("addr_info", []):
            addrs.append((a["local"], a["prefixlen"]))
            if a["local"] == "10.77.0.9":
                check(a.get("label") == "lo:cryo", "label of 10.77.0.9: %r" % a.get("label"))
            if a["local"] == "fd77::1":
                check("nodad" in json.dumps(a), "fd77::1 lost nodad: %r" % a)
    check(addrs == ADDRS, "addresses of lo expected %r actual %r" % (ADDRS, addrs))
    routes = json.loads(run("ip", "-j", "route", "show", "10.78.0.0/16"))
    check(len(routes) == 1 and routes[0].get("dev") == "lo" and routes[0].get("metric") == 7,
          "route 10.78.0.0/16: %r" % routes)
    for path, value in SYSCTLS.items():
        with open("/proc/sys/" + path) as f:
            got = f.read().strip()
        check(got == value, "sysctl %s expected %s actual %s" % (path, value, got))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ttl = s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
    s.close()
    check(ttl == 33, "a new socket's TTL (net.ipv4.ip_default_ttl) expected 33 actual %d" % ttl)
    rules = run("nft", "list", "table", "inet", "cryotest")
    check("tcp dport 9 counter" in rules and "drop" in rules, "nft table inet cryotest: %r" % rules)
    if VETH:
        link = json.loads(run("ip", "-j", "addr", "show", "dev", "veth0"))[0]
        got = (link.get("link_type"), link.get("address"), link.get("mtu"), "UP" in link.get("flags", []),
               [(a["local"], a["prefixlen"]) for a in link.get("addr_info", []) if a["family"] == "inet"])
        check(got == ("ether", VETH_MAC, 1400, True, [("10.88.0.1", 24)]), "veth0: %r" % (got,))
        kind = json.loads(run("ip", "-j", "-d", "link", "show", "dev", "veth0"))[0]["linkinfo"]["info_kind"]
        check(kind == "veth", "veth0 is of kind %r" % kind)


def serve(conn):
    conn.settimeout(5)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(100)
        if not chunk:
            break
        data += chunk
    conn.sendall(b"pong %d %s" % (os.getpid(), data))
    conn.close()


def main():
    ctl = sys.argv[1]
    setup()
    listeners = {}
    for host in HOSTS:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, PORT))
        s.listen(8)
        listeners[host] = s
    conns = Connections()
    write_atomic(ctl, "ready", "%d\n" % os.getpid())
    counter = prev = 0
    while True:
        counter += 1
        ready, _, _ = select.select(list(listeners.values()), [], [], 0.01)
        for s in ready:
            conn, _ = s.accept()
            serve(conn)
        req = poll_verify(ctl)
        if req is None:
            continue
        fails = []

        def check(ok, msg):
            if not ok:
                fails.append(msg)

        check(counter > prev, "counter did not advance")
        try:
            read_state(check)
            conns.check(counter, check)
            for host in HOSTS:
                c = socket.create_connection((host, PORT), timeout=5)
                c.sendall(b"self\n")
                conn, _ = listeners[host].accept()
                serve(conn)
                reply = c.recv(100)
                c.close()
                check(reply == b"pong %d self\n" % os.getpid(), "reply from %s: %r" % (host, reply))
        except (OSError, subprocess.CalledProcessError, ValueError) as e:
            fails.append("%s: %s" % (type(e).__name__, getattr(e, "stderr", "") or e))
        line = ("FAIL " + "; ".join(fails) + "\n") if fails else "OK netns.py counter=%d\n" % counter
        write_atomic(ctl, "result", line)
        prev = counter
        if req == "exit":
            return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
