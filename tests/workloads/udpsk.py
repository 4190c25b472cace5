#!/usr/bin/python3
"""udpsk.py: UDP sockets with datagrams queued, checked by the workload itself.

Usage: /usr/bin/python3 udpsk.py CTL_DIR

The parent holds:
  r4  UDP 127.0.0.1:P (SO_REUSEADDR, SO_RCVBUF, IP_TOS, IP_TTL, SO_BINDTODEVICE lo)
      with datagrams queued from two senders, s4a (the parent's, bound) and
      s4b (the child's, autobound), one of zero length, and one from
      192.0.2.7:4242, an address of no interface here (written with a raw socket);
  r6  UDP6 [::1]:P (IPV6_V6ONLY) with datagrams from s6a (parent) and s6b (child);
  d6  UDP6 [::]:P dual-stack, with a datagram from an IPv4 sender (v4-mapped source);
  c4  UDP 127.0.0.1 connected to p4 (SO_RCVTIMEO), a datagram from p4 queued;
  m4  UDP 0.0.0.0:P member of multicast group 239.1.2.3 on lo, nothing queued;
  sw  UDP connected and shut down for writing; u: never bound; b: SO_BROADCAST,
      IP_MULTICAST_TTL.
On verify, every queue must hold exactly what was sent, in order, from the
same sources; the ports are the ones bound at the start; the options read
back; c4 still sends to p4 (and p4 sees c4's address); a datagram sent to
the group reaches m4; sw still refuses to send (EPIPE). Then the queues are
filled again the same way for the next check. Same control protocol as the C
workloads (wl_common.h).
"""
import errno
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop import poll_verify, write_atomic  # noqa: E402

FOREIGN = ("192.0.2.7", 4242)
GROUP = "239.1.2.3"


def raw_datagram(src, dst, payload):
    """An IPv4 UDP packet from `src` to `dst` (no checksum), sent with a raw socket."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(ip + udp, (dst[0], 0))
    raw.close()


def child(ctl, r4_addr, r6_addr):
    s4b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s6b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ctl.send(b"%d" % os.getpid())
    while True:
        req = ctl.recv(4096)
        if not req:
            os._exit(0)
        kind, _, payload = req.partition(b" ")
        if kind == b"4":
            s4b.sendto(payload, r4_addr)
        elif kind == b"6":
            s6b.sendto(payload, r6_addr)
        elif kind == b"A":
            # Autobound to the wildcard address: they send from loopback.
            ctl.send(repr((("127.0.0.1", s4b.getsockname()[1]), ("::1", s6b.getsockname()[1]))).encode())
            continue
        ctl.send(b"K")


class Udp:
    def __init__(self):
        self.r4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.r4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.r4.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 300000)
        self.r4.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
        self.r4.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
        self.r4.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        self.r4.bind(("127.0.0.1", 0))
        self.r4.setblocking(False)
        self.r6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.r6.bind(("::1", 0))
        self.r6.setblocking(False)
        self.d6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.d6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.d6.bind(("::", 0))
        self.d6.setblocking(False)
        self.s4a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s4a.bind(("127.0.0.1", 0))
        self.s6a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.s6a.bind(("::1", 0))
        self.p4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.p4.bind(("127.0.0.1", 0))
        self.p4.settimeout(10)
        self.c4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.c4.connect(self.p4.getsockname())
        self.c4.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 9, 0))
        self.p4.connect(self.c4.getsockname())
        self.m4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.m4.bind(("0.0.0.0", 0))
        self.m4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                           struct.pack("4s4si", socket.inet_aton(GROUP), b"\0" * 4, 1))
        self.m4.settimeout(10)
        self.sw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sw.connect(self.p4.getsockname())
        self.sw.shutdown(socket.SHUT_WR)
        self.u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.b.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.b.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 7)
        self.b.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        self.names = {k: getattr(self, k).getsockname() for k in ("r4", "r6", "d6", "s4a", "s6a", "p4", "c4", "m4")}
        self.gen = 0

    def fill(self, ctl):
        """Queues the generation's datagrams on r4, r6, d6 and c4."""
        self.gen += 1
        g = self.gen

        def child_send(kind, payload):
            ctl.send(kind + b" " + payload)
            if ctl.recv(8) != b"K":
                raise RuntimeError("the child did not send")
        self.s4a.sendto(b"a%d" % g, self.names["r4"])
        child_send(b"4", b"b%d" % g)
        raw_datagram(FOREIGN, self.names["r4"], b"foreign %d" % g)
        self.s4a.sendto(b"", self.names["r4"])
        child_send(b"4", b"b-last %d" % g + b"x" * 300)
        self.s6a.sendto(b"six a%d" % g, self.names["r6"])
        child_send(b"6", b"six b%d" % g)
        self.s4a.sendto(b"mapped %d" % g, ("127.0.0.1", self.names["d6"][1]))
        self.p4.send(b"peer %d" % g)

    def expect(self, sock, want, what):
        got = []
        while True:
            try:
                data, src = sock.recvfrom(70000)
            except BlockingIOError:
                break
            got.append((data, src[:2]))
        if got != want:
            short = lambda q: [(d[:40], s) for d, s in q]  # noqa: E731
            return "%s: queue %r, expected %r" % (what, short(got), short(want))
        return ""

    def check(self, ctl, child_names):
        g = self.gen
        n = self.names
        for k, want in n.items():
            if getattr(self, k).getsockname() != want:
                return "%s now bound to %r, was %r" % (k, getattr(self, k).getsockname(), want)
        s4b, s6b = child_names
        err = (self.expect(self.r4, [(b"a%d" % g, n["s4a"]), (b"b%d" % g, s4b), (b"foreign %d" % g, FOREIGN),
                                     (b"", n["s4a"]), (b"b-last %d" % g + b"x" * 300, s4b)], "r4")
               or self.expect(self.r6, [(b"six a%d" % g, n["s6a"][:2]), (b"six b%d" % g, s6b)], "r6")
               or self.expect(self.d6, [(b"mapped %d" % g, ("::ffff:127.0.0.1", n["s4a"][1]))], "d6"))
        if err:
            return err
        opts = (self.r4.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
                self.r4.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                self.r4.getsockopt(socket.IPPROTO_IP, socket.IP_TOS),
                self.r4.getsockopt(socket.IPPROTO_IP, socket.IP_TTL),
                self.r4.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0"),
                self.r6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
                self.d6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
                struct.unpack("ll", self.c4.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))[0],
                self.b.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST),
                self.b.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL),
                self.u.getsockname())
        want = (1, 600000, 0x10, 33, b"lo", 1, 0, 9, 1, 7, ("0.0.0.0", 0))
        if opts != want:
            return "options %r, expected %r" % (opts, want)
        # The connected pair: c4's queue, then each still sends to the other.
        data, src = self.c4.recvfrom(100)
        if (data, src) != (b"peer %d" % g, n["p4"]):
            return "c4 read %r from %r" % (data, src)
        self.c4.send(b"to peer %d" % g)
        data, src = self.p4.recvfrom(100)
        if (data, src) != (b"to peer %d" % g, n["c4"]):
            return "p4 read %r from %r" % (data, src)
        # The group membership: a datagram sent to the group arrives.
        self.b.sendto(b"group %d" % g, (GROUP, n["m4"][1]))
        data, _ = self.m4.recvfrom(100)
        if data != b"group %d" % g:
            return "m4 read %r" % data
        try:
            self.sw.send(b"x")
            return "a socket shut down for writing sent"
        except OSError as e:
            if e.errno != errno.EPIPE:
                return "send on a socket shut down for writing: %s" % e
        return ""


def main():
    ctl_dir = sys.argv[1]
    u = Udp()
    ctl_p, ctl_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ctl_p.close()
        child(ctl_c, u.names["r4"], u.names["r6"])
    ctl_c.close()
    ctl_p.settimeout(20)
    ctl_p.recv(16)
    u.fill(ctl_p)
    ctl_p.send(b"A")  # the child's senders are bound now (by their first sendto)
    child_names = eval(ctl_p.recv(200).decode())
    write_atomic(ctl_dir, "ready", "%d\n" % os.getpid())
    while True:
        req = poll_verify(ctl_dir)
        if req is None:
            time.sleep(0.02)
            continue
        try:
            err = u.check(ctl_p, child_names)
            if not err:
                u.fill(ctl_p)
        except Exception as e:  # noqa: BLE001
            err = "%s: %s" % (type(e).__name__, e)
        write_atomic(ctl_dir, "result", ("FAIL %s" % err if err else "OK udp generation %d" % u.gen) + "\n")
        if req == "exit":
            ctl_p.close()
            os.waitpid(pid, 0)
            return 1 if err else 0


if __name__ == "__main__":
    sys.exit(main())
