#!/usr/bin/python3
"""End-to-end tests of half-closed and closing TCP connections (src/net/tcp_fin.cc).

The workload holds, with bytes queued both ways:
- a/b: b shut down for writing: a CLOSE_WAIT (b's bytes then the FIN
  queued), b FIN_WAIT2;
- c/d: c filled d's small window then shut down: c FIN_WAIT1, its FIN not
  sent yet behind the bytes d has not taken;
- e/f: f shut down (e CLOSE_WAIT), then e filled f's window and shut down:
  e LAST_ACK, its FIN not sent yet; f FIN_WAIT2.
After the restore it checks its own: every state as before the dump, a reads
b's bytes then end of stream and can still send; b reads a's bytes, then end
of stream once a shuts down; d and f read every byte, then end of stream; c
cannot send any more. With a peer outside the tree (a separate process) the
same holds for the outside end: it reads our bytes then our FIN, and ours
reads its bytes then its FIN.

Kill mode, rewind (dump --leave-running, the original killed), IPv4 and IPv6.

Run: test_tcp_halfclosed.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_tcp import check_no_lock, kill_tree, lock_tables, unlocking, wait_file  # noqa: E402

COMMON = r"""
import os, socket, sys, time
def state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
def pattern(n, seed):
    return bytes((i * 7 + seed) % 251 for i in range(n))
def fill(s, seed):
    # Sends until the peer's window and our buffer are full.
    s.setblocking(False)
    sent = b""
    while True:
        try:
            n = s.send(pattern(65536, seed + len(sent))[:65536])
        except BlockingIOError:
            break
        sent += pattern(65536, seed + len(sent))[:n]
    s.setblocking(True)
    return sent
def read_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d
def put(name, text):
    # Written whole then renamed: the test reads `result` as soon as it exists.
    open(name + ".tmp", "w").write(text)
    os.rename(name + ".tmp", name)
def expect(cond, what):
    if not cond:
        put("result", "FAIL: %s\n" % what)
        sys.exit(1)
def wait_go():
    while not os.path.exists("go"):
        time.sleep(0.02)
def wait_states(socks, want):
    deadline = time.monotonic() + 10
    while [state(s) for s in socks] != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return [state(s) for s in socks]
"""

INTREE = COMMON + r"""
fam = socket.AF_INET if sys.argv[1] == "4" else socket.AF_INET6
host = "127.0.0.1" if sys.argv[1] == "4" else "::1"
def listener(small):
    l = socket.socket(fam)
    if small:
        l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    l.bind((host, 0))
    l.listen(4)
    return l
def pair(l):
    c = socket.create_connection(l.getsockname()[:2])
    s, _ = l.accept()
    return c, s
big, small = listener(False), listener(True)
a, b = pair(big)
a.sendall(pattern(5000, 1))
b.sendall(pattern(7000, 2))
b.shutdown(socket.SHUT_WR)
c, d = pair(small)
cd = fill(c, 3)
c.shutdown(socket.SHUT_WR)
f, e = pair(small)  # f's receive buffer is small
f.sendall(pattern(3000, 4))
f.shutdown(socket.SHUT_WR)
time.sleep(0.2)
ef = fill(e, 5)
e.shutdown(socket.SHUT_WR)
time.sleep(0.3)
socks = [a, b, c, d, e, f]
before = [state(s) for s in socks]
open("states-before", "w").write(" ".join(map(str, before)))
open("ready", "w").write("x")
wait_go()
after = wait_states(socks, before)
open("states-after", "w").write(" ".join(map(str, after)))
expect(after == before, "states %r, before the dump %r" % (after, before))
expect(read_all(a) == pattern(7000, 2), "a: b's bytes then end of stream")
a.sendall(b"more")
a.shutdown(socket.SHUT_WR)
expect(read_all(b) == pattern(5000, 1) + b"more", "b: a's bytes, 'more', end of stream")
expect(read_all(d) == cd, "d: c's %d bytes then end of stream" % len(cd))
try:
    c.send(b"x")
    expect(False, "c could send after its shutdown")
except BrokenPipeError:
    pass
expect(read_all(e) == pattern(3000, 4), "e: f's bytes then end of stream")
expect(read_all(f) == ef, "f: e's %d bytes then end of stream" % len(ef))
put("result", "ok")
while True:
    time.sleep(0.05)
"""

# The end in the tree: connects to the outside peer twice.
INSIDE = COMMON + r"""
port = int(sys.argv[1])
x = socket.create_connection(("127.0.0.1", port))
x2 = socket.create_connection(("127.0.0.1", port))
x.sendall(pattern(4000, 6))
x2.sendall(pattern(2500, 7))
x2.shutdown(socket.SHUT_WR)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
time.sleep(0.3)
before = [state(x), state(x2)]
open("states-before", "w").write(" ".join(map(str, before)))
open("ready", "w").write("x")
wait_go()
after = wait_states([x, x2], before)
expect(after == before, "states %r, before the dump %r" % (after, before))
expect(read_all(x) == pattern(3000, 8), "x: the peer's bytes then end of stream")
x.sendall(b"more")
x.shutdown(socket.SHUT_WR)
expect(read_all(x2) == pattern(1500, 9), "x2: the peer's bytes then end of stream")
put("result", "ok")
while True:
    time.sleep(0.05)
"""

OUTSIDE = COMMON + r"""
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(2)
open("port.tmp", "w").write(str(l.getsockname()[1]))
os.rename("port.tmp", "port")
y, _ = l.accept()
y2, _ = l.accept()
y.sendall(pattern(3000, 8))
y.shutdown(socket.SHUT_WR)
y2.sendall(pattern(1500, 9))
open("sent", "w").write("x")
wait_go()
expect(read_all(y) == pattern(4000, 6) + b"more", "y: the inside bytes, 'more', end of stream")
expect(read_all(y2) == pattern(2500, 7), "y2: the inside bytes then end of stream")
y2.shutdown(socket.SHUT_WR)
put("result", "ok")
while True:
    time.sleep(0.05)
"""

# TCP_* numbers (netinet/tcp.h).
ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK = 1, 4, 5, 8, 9


def go_and_check(ws):
    for w in ws:
        open(w.path("go"), "w").write("x")
    for w in ws:
        wait_file(w, "result", timeout=30)
        check_eq(cryotest.read_text(w.path("result")), "ok", "%s after the restore" % w.name)


def check_image_features(h, images):
    feats = h.show_json(images)["features"]
    check("tcp-half-closed" in feats, "image features lack tcp-half-closed: %r" % feats)


def intree(h, family, rewind):
    w = h.start("half%s" % family, [cryotest.PYTHON, "-c", INTREE, family])
    wait_file(w, "ready")
    states = [int(x) for x in cryotest.read_text(w.path("states-before")).split()]
    check_eq(states, [CLOSE_WAIT, FIN_WAIT2, FIN_WAIT1, ESTABLISHED, LAST_ACK, FIN_WAIT2], "the workload's states")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=rewind)
    check_image_features(h, images)
    if rewind:
        check_no_lock("after a dump --leave-running")
        kill_tree(h, w.pid)
    else:
        h.reap_original(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the restore")
    go_and_check([w])
    kill_tree(h, r.pid)


def test_intree_ipv4_kill(h):
    intree(h, "4", False)


def test_intree_ipv6_kill(h):
    intree(h, "6", False)


def test_intree_rewind(h):
    intree(h, "4", True)


def test_outside_peer_kill(h):
    """The end outside the tree reads our bytes and our FIN after the
    restore; ours reads its bytes, then its FIN (CLOSE_WAIT), and a
    FIN_WAIT2 end stays so."""
    peer = h.start("peer", [cryotest.PYTHON, "-c", OUTSIDE])
    wait_file(peer, "port")
    w = h.start("inside", [cryotest.PYTHON, "-c", INSIDE, open(peer.path("port")).read(), peer.path("sent")])
    wait_file(w, "ready")
    states = [int(x) for x in cryotest.read_text(w.path("states-before")).split()]
    check_eq(states, [CLOSE_WAIT, FIN_WAIT2], "the inside end's states")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    check_image_features(h, images)
    check_eq(len(lock_tables()), 1, "lock tables between the dump and the restore")
    h.reap_original(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the restore")
    go_and_check([w, peer])
    kill_tree(h, r.pid)
    h.cleanup_one(peer.pid)


TESTS = [unlocking(t) for t in [
    test_intree_ipv4_kill,
    test_intree_ipv6_kill,
    test_intree_rewind,
    test_outside_peer_kill,
]]

if __name__ == "__main__":
    rc = cryotest.main(TESTS, description=__doc__)
    check_no_lock("after the suite")
    sys.exit(rc)
