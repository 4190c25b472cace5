#!/usr/bin/python3
"""netns.py: a tree that owns its network namespace, checked by itself.

Usage: unshare --net --fork -- /usr/bin/python3 netns.py CTL_DIR

At the start, inside its fresh namespace (ip(8), nft(8), /proc/sys), it
configures: lo up with 10.77.0.1/24, a secondary 10.77.0.9/24 labelled
lo:cryo and fd77::1/64 (nodad); a route 10.78.0.0/16 dev lo metric 7 in the
main table; the sysctls net.ipv4.ip_default_ttl=33, net.core.somaxconn=77,
net.ipv4.conf.lo.arp_ignore=2; an nftables table "inet cryotest" with a
counter rule; then it listens on TCP 10.77.0.1:7777 and [fd77::1]:7777 and
answers "pong PID" to every line a client sends.
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
    listeners = []
    for family, host in ((socket.AF_INET, "10.77.0.1"), (socket.AF_INET6, "fd77::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, PORT))
        s.listen(8)
        listeners.append(s)
    write_atomic(ctl, "ready", "%d\n" % os.getpid())
    counter = prev = 0
    while True:
        counter += 1
        ready, _, _ = select.select(listeners, [], [], 0.01)
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
            for host in ("10.77.0.1", "fd77::1"):
                c = socket.create_connection((host, PORT), timeout=5)
                c.sendall(b"self\n")
                conn, _ = listeners[0 if ":" not in host else 1].accept()
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
