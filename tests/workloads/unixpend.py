#!/usr/bin/python3
"""unixpend.py: connections waiting in UNIX listeners' accept queues.

Usage: /usr/bin/python3 unixpend.py CTL_DIR

The parent listens on a stream and a seqpacket socket (abstract names); its child (as uid/gid 65534) connects 3 stream and 2
seqpacket clients to them, each bound to an abstract name that says its
generation and rank, and sends nothing (the first stream client shuts its
sending side down). Nobody accepts them until a verify.

Same control protocol as the C workloads (wl_common.h). On verify, the parent
accepts every connection: each must come in the order its client connected
(the peer's name), with the client's ids as SO_PEERCRED and nothing queued
(the first one at end of file); then it sends "hello G I" on each, which the
child must read on the right client, which answers "ack G I" (but the first).
On "check" the child then makes the next generation of pending connections.
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop import poll_verify, write_atomic  # noqa: E402

NOBODY = 65534
STREAM, SEQ = 3, 2


def name(tag, gen, kind, i):
    return "\0cryo-pend-%s-%d-%s%d" % (tag, gen, kind, i)


def child(ctl_sock, srv_path, seq_name, tag):
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    ctl_sock.settimeout(None)
    gen = 0
    clients = []
    while True:
        req = ctl_sock.recv(16)
        if not req:
            os._exit(0)
        if req == b"G":
            gen += 1
            clients = []
            for kind, n, typ, addr in (("s", STREAM, socket.SOCK_STREAM, srv_path),
                                       ("q", SEQ, socket.SOCK_SEQPACKET, seq_name)):
                for i in range(n):
                    c = socket.socket(socket.AF_UNIX, typ)
                    c.bind(name(tag, gen, kind, i))
                    c.connect(addr)
                    clients.append((kind, i, c))
            clients[0][2].shutdown(socket.SHUT_WR)
            ctl_sock.sendall(b"R")
        elif req == b"X":
            err = ""
            for kind, i, c in clients:
                c.settimeout(10)
                want = b"hello %d %s%d" % (gen, kind.encode(), i)
                got = c.recv(100)
                if got != want:
                    err = err or "client %s%d of generation %d read %r, not %r" % (kind, i, gen, got, want)
                if (kind, i) != ("s", 0):
                    c.sendall(b"ack %d %s%d" % (gen, kind.encode(), i))
            ctl_sock.sendall(b"E" + err.encode() if err else b"K")


def exchange(listeners, ctl_sock, gen, tag):
    """Accepts every pending connection; '' or what is wrong."""
    accepted = []
    for kind, n, lsock in listeners:
        lsock.setblocking(False)
        for i in range(n):
            try:
                conn, peer = lsock.accept()
            except BlockingIOError:
                return "listener %s has %d pending connections, expected %d" % (kind, i, n)
            want = name(tag, gen, kind, i).encode()
            if peer != want and peer != want.decode():
                return "accepted %r as connection %s%d, expected %r" % (peer, kind, i, want)
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if (uid, gid) != (NOBODY, NOBODY):
                return "connection %s%d: peer credentials uid %d gid %d" % (kind, i, uid, gid)
            conn.setblocking(False)
            try:
                early = conn.recv(100)
            except BlockingIOError:
                early = None
            if early != (b"" if (kind, i) == ("s", 0) else None):
                return "connection %s%d had %r queued" % (kind, i, early)
            accepted.append((kind, i, conn))
        try:
            conn, peer = lsock.accept()
            return "listener %s has a connection too many (%r)" % (kind, peer)
        except BlockingIOError:
            pass
    for kind, i, conn in accepted:
        conn.setblocking(True)
        conn.settimeout(10)
        conn.sendall(b"hello %d %s%d" % (gen, kind.encode(), i))
    ctl_sock.sendall(b"X")
    for kind, i, conn in accepted:
        if (kind, i) == ("s", 0):
            continue
        got = conn.recv(100)
        if got != b"ack %d %s%d" % (gen, kind.encode(), i):
            return "connection %s%d answered %r" % (kind, i, got)
    r = ctl_sock.recv(200)
    for _, _, conn in accepted:
        conn.close()
    return "" if r == b"K" else "child: %r" % r


def main():
    ctl = sys.argv[1]
    tag = str(os.getpid())
    # Abstract names: the child, uid 65534, may not reach the control dir.
    srv_path = "\0cryo-pend-%s-stream" % tag
    seq_name = "\0cryo-pend-%s-listener" % tag
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(srv_path)
    srv.listen(8)
    seq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    seq.bind(seq_name)
    seq.listen(8)
    ctl_p, ctl_c = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        srv.close()
        seq.close()
        ctl_p.close()
        child(ctl_c, srv_path, seq_name, tag)
    ctl_c.close()
    ctl_p.settimeout(20)
    gen = 1
    ctl_p.sendall(b"G")
    if ctl_p.recv(1) != b"R":
        return 1
    listeners = [("s", STREAM, srv), ("q", SEQ, seq)]
    write_atomic(ctl, "ready", "%d\n" % os.getpid())
    while True:
        req = poll_verify(ctl)
        if req is None:
            time.sleep(0.01)
            continue
        err = exchange(listeners, ctl_p, gen, tag)
        if not err and req != "exit":
            gen += 1
            ctl_p.sendall(b"G")
            if ctl_p.recv(1) != b"R":
                err = "the child made no new generation"
        write_atomic(ctl, "result", ("FAIL " + err if err else "OK generation %d" % gen) + "\n")
        if req == "exit":
            ctl_p.close()
            os.waitpid(pid, 0)
            return 1 if err else 0


if __name__ == "__main__":
    sys.exit(main())
