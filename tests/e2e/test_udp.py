#!/usr/bin/python3
"""End-to-end tests of UDP, netlink and the other sockets.

UDP (tests/workloads/udpsk.py): bound sockets over IPv4 and IPv6 (also
dual-stack, v4-mapped), one connected, one shut down for writing, one never
bound, a multicast member; datagrams queued from two senders of the tree
(parent and child) and from an address of no interface here, one of zero
length; the workload checks its own queues (order, sources, boundaries),
ports, options, group membership and that the connected socket still sends
to its peer, in kill, leave-running and rewind modes.

Queued datagrams the kernel hides from peeking (an empty datagram already
peeked at, by the program or by an earlier --leave-running dump) are found
by the kernel's own count (a BPF iterator) and refused by name; without the
iterator (CRYO_PRETEND_MISSING=bpf-iter-udp) a queue is refused unless
--udp-queue-unverified.

Netlink: a route socket bound to groups (RTMGRP_LINK, IPv4 addresses) and a
sock_diag socket come back with their port ids and groups, and still answer
and get notifications (a dummy address added on lo after the restore).

Refused by name (pid, fd, what the socket is, nothing written): ICMP
("ping"), raw and packet sockets, UDP-Lite, MPTCP (naming
GODEBUG=multipathtcp=0), UDP GSO (UDP_SEGMENT), a socket filter, a datagram
being built (MSG_MORE), a netlink socket with unread messages and one of
another protocol, queued datagrams with IP_PKTINFO.

Run: test_udp.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
# The three modes for a workload that checks itself, as for UNIX sockets.
from test_unix import kill_mode, leave_running_mode, rewind_mode  # noqa: E402
from test_fallbacks import Pretend  # noqa: E402


def start_udp(h):
    w = h.start_workload("udpsk.py")
    h.wait_ready(w)
    return w


def test_udp_kill(h):
    kill_mode(h, start_udp(h), "udp-sockets")


def test_udp_leave_running(h):
    leave_running_mode(h, start_udp(h))


def test_udp_rewind(h):
    rewind_mode(h, start_udp(h), 2)


# A process with netlink sockets that checks them itself: the route socket's
# port id and groups (getsockname, NETLINK_LIST_MEMBERSHIPS), an answer to a
# request on each, and a notification of an address added on lo (RTMGRP_IPV4_IFADDR).
NETLINK = r"""
import os, socket, struct, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from loop import poll_verify, write_atomic
NETLINK_LIST_MEMBERSHIPS, SOL_NETLINK = 9, 270
rt = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
rt.bind((0, 0x10))  # RTMGRP_IPV4_IFADDR
rt.setsockopt(SOL_NETLINK, 1, 33)  # NETLINK_ADD_MEMBERSHIP RTNLGRP_BRVLAN (beyond the 32 of bind)
rt.setsockopt(SOL_NETLINK, 11, 1)  # NETLINK_EXT_ACK
rt.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
diag.bind((0, 0))
req = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)  # never bound
before = (rt.getsockname(), diag.getsockname(), rt.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 8),
          rt.getsockopt(SOL_NETLINK, 11), rt.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), req.getsockname())
req_bound = None  # req's port id once its first request bound it
def ask(sock, msgtype, payload):
    sock.send(struct.pack("=LHHLL", 16 + len(payload), msgtype, 0x301, 7, 0) + payload)  # NLM_F_REQUEST|NLM_F_DUMP
    sock.settimeout(5)
    types = set()
    while 3 not in types and 2 not in types:  # the whole answer, to NLMSG_DONE (or NLMSG_ERROR)
        data = sock.recv(65536)
        while len(data) >= 16:
            length, mtype = struct.unpack("=LH", data[:6])
            types.add(mtype)
            data = data[(length + 3) & ~3:]
    return types
def check(gen):
    now = (rt.getsockname(), diag.getsockname(), rt.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 8),
           rt.getsockopt(SOL_NETLINK, 11), rt.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), req.getsockname())
    global req_bound
    if now[:-1] != before[:-1] or now[-1] != (req_bound or before[-1]):
        return "netlink sockets now %r, were %r (req bound to %r)" % (now, before, req_bound)
    addr = "127.77.%d.1" % gen
    subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=True)
    subprocess.run(["ip", "addr", "del", addr + "/32", "dev", "lo"], check=True)
    rt.settimeout(5)
    seen = []
    while True:
        data = rt.recv(65536)
        mtype = struct.unpack("=LH", data[:6])[1]
        seen.append(mtype)
        if mtype == 21:  # RTM_DELADDR
            break
    if 20 not in seen:
        return "route socket got %r, no RTM_NEWADDR" % seen
    t = ask(diag, 20, struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xfff) + bytes(48))
    if 2 in t:  # NLMSG_ERROR
        return "sock_diag answered %r" % t
    t = ask(req, 18, struct.pack("=BxHiII", 0, 0, 0, 0, 0))  # RTM_GETLINK
    if 16 not in t:  # RTM_NEWLINK
        return "route request answered %r, no RTM_NEWLINK" % t
    req_bound = req.getsockname()
    return ""
write_atomic(".", "ready", "%d\n" % os.getpid())
gen = 0
while True:
    r = poll_verify(".")
    if r is None:
        time.sleep(0.02)
        continue
    gen += 1
    try:
        err = check(gen)
    except Exception as e:
        err = "%s: %s" % (type(e).__name__, e)
    write_atomic(".", "result", ("FAIL " + err if err else "OK netlink %d" % gen) + "\n")
    if r == "exit":
        sys.exit(1 if err else 0)
"""


def start_netlink(h):
    w = h.start("netlink", [cryotest.PYTHON, "-c", NETLINK, h.workloads])
    h.wait_ready(w)
    return w


def test_netlink_kill(h):
    kill_mode(h, start_netlink(h), "netlink-sockets")


def test_netlink_rewind(h):
    rewind_mode(h, start_netlink(h), 2)


def start_script(h, name, script):
    w = h.start(name, [cryotest.PYTHON, "-c", script + "\nopen('ready', 'w').write('x')\n"
                       "while True: time.sleep(0.05)\n"])
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
        if not cryotest.pid_alive(w.pid):
            break
        time.sleep(0.02)
    check(os.path.exists(w.path("ready")), "%s never got ready: %s" % (name, w.stderr()))
    return w


# name -> (script making the socket as fd `s`, words the refusal must hold).
REFUSED = {
    "ping": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n",
             ["ICMP (ping)", "ping\") sockets are not restored"]),
    "raw": ("s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n",
            ["raw IPv4 protocol 17", "raw sockets are not restored"]),
    "packet": ("s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))\n"
               "s.bind(('lo', 0x0800))\n",
               ["packet (datagram) ifindex 1 protocol 0x800", "packet sockets are not restored"]),
    "udplite": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)\ns.bind(('127.0.0.1', 0))\n",
                ["UDP-Lite 127.0.0.1:", "UDP-Lite sockets are not restored"]),
    "mptcp": ("s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)\ns.bind(('127.0.0.1', 0))\n",
              ["MPTCP 127.0.0.1:", "GODEBUG=multipathtcp=0"]),
    "mptcp_listen": ("s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, 262)\ns.bind(('::1', 0))\ns.listen(4)\n",
                     ["MPTCP6 [::1]:", "GODEBUG=multipathtcp=0"]),
    "gso": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_UDP, 103, 1400)\n",
            ["UDP 0.0.0.0:0 (not connected)", "UDP_SEGMENT (GSO)"]),
    "filter": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n"
               "import struct\n"
               "prog = struct.pack('HBBI', 6, 0, 0, 0xffff)\n"  # BPF_RET|BPF_K 0xffff
               "buf = __import__('ctypes').create_string_buffer(prog)\n"
               "s.setsockopt(socket.SOL_SOCKET, 26, struct.pack('HL', 1, __import__('ctypes').addressof(buf)))\n",
               ["UDP 127.0.0.1:", "socket filter"]),
    "corked": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "s.sendto(b'half', socket.MSG_MORE, ('127.0.0.1', 9))\n",
               ["UDP 0.0.0.0:", "being built"]),
    "pktinfo": ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n"
                "s.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO\n"
                "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', s.getsockname())\n",
                ["UDP 127.0.0.1:", "1 datagrams are queued", "IP_PKTINFO"]),
    "netlink_queued": ("s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)\n"
                       "import struct\n"
                       "s.send(struct.pack('=LHHLLBxHiII', 32, 18, 0x301, 1, 0, 0, 0, 0, 0, 0))\n"
                       "time.sleep(0.2)\n",
                       ["netlink route socket portid", "wait to be read"]),
    "netlink_other": ("s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)\n",  # NETLINK_NETFILTER
                      ["netlink netfilter (raw)", "netlink sockets of this protocol are not restored"]),
}


PING_RANGE = "/proc/sys/net/ipv4/ping_group_range"


def test_refused_sockets(h):
    """Each socket cryo does not restore refuses the dump, naming the pid,
    the fd, what the socket is and why; nothing is written."""
    # ICMP echo sockets need the group in ping_group_range (icmp(7)); the
    # machine's setting is put back after.
    ping_range = cryotest.read_text(PING_RANGE).strip()
    try:
        with open(PING_RANGE, "w") as f:
            f.write("0 0")
        for name, (script, words) in REFUSED.items():
            w = start_script(h, name, "import socket, time\n" + script +
                             "open('fd', 'w').write(str(s.fileno()))\n")
            fd = cryotest.read_text(w.path("fd")).strip()
            h.dump_refused(w.pid, ["pid %d fd %s" % (w.pid, fd)] + words)
            h.cleanup_one(w.pid)
    finally:
        with open(PING_RANGE, "w") as f:
            f.write(ping_range.replace("\t", " "))


def test_peeked_empty_datagram_refused(h):
    """An empty datagram that an earlier --leave-running dump peeked at is
    passed over by every later peek (the kernel skips an empty skb once
    peeked): a later dump that would not see it is refused by name instead
    of losing it."""
    w = start_script(h, "udp-empty",
                     "import socket, time\n"
                     "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n"
                     "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'', s.getsockname())\n"
                     "time.sleep(0.2)\n")
    h.dump(w.pid, h.mkdir("img-first"), leave_running=True)  # sees it, and marks it peeked
    h.dump_refused(w.pid, ["UDP 127.0.0.1:", "1 datagrams the kernel hides from peeking: empty datagrams "
                           "already peeked at"])
    h.kill_and_reap(w)


# A program with [b"a", b"", b"b"] queued on a UDP socket (`PEEK` runs
# then), that reads its queue once the file `go` exists and writes what it
# got to `got`.
QUEUE_ABC = r"""
import os, socket, threading, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for d in [b'a', b'', b'b']: o.sendto(d, s.getsockname())
PEEK
open('fd', 'w').write(str(s.fileno()))
def reader():
    while not os.path.exists('go'): time.sleep(0.02)
    s.setblocking(False)
    got = []
    while True:
        try: got.append(s.recv(100))
        except BlockingIOError: break
    open('got.tmp', 'w').write(repr(got))
    os.rename('got.tmp', 'got')
threading.Thread(target=reader, daemon=True).start()
"""
SO_PEEK_OFF = 42


def start_abc(h, name, peek="pass"):
    return start_script(h, name, QUEUE_ABC.replace("PEEK", peek))


def queue_read(h, w, pid):
    """What the program `w` (running as `pid`) reads from its queue."""
    with open(w.path("go"), "w") as f:
        f.write("x")
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("got")) and time.monotonic() < deadline and cryotest.pid_alive(pid):
        time.sleep(0.02)
    return cryotest.read_text(w.path("got"), "(nothing)")


def test_empty_datagram_among_others_dumped_again(h):
    """[b"a", b"", b"b"] queued: restored exactly, and again after a second
    dump of the restored program (the restore checks the arrival of a queue
    holding an empty datagram without peeking, which would mark it peeked
    and hide it from every later peek)."""
    w = start_abc(h, "udp-empty-among")
    pid = w.pid
    for n in (1, 2):
        images = h.mkdir("img-%d" % n)
        h.dump(pid, images)
        if n == 1:
            h.reap_original(w)
        cryotest.wait_pids_gone([pid])
        pid = h.restore(images, detach=True, expected_pid=w.pid).pid
    check_eq(queue_read(h, w, pid), repr([b"a", b"", b"b"]), "the queue read by the program restored from its second dump")
    h.cleanup_one(pid)


# The program itself peeked at the empty datagram: past "a" with a peek
# offset, or at offset 0 once "a" was taken. Every later peek passes it over;
# the kernel's count (a BPF iterator) still holds it.
PROGRAM_PEEKS = {
    "past-a": ("s.setsockopt(socket.SOL_SOCKET, %d, 0)\n"
               "assert s.recv(100, socket.MSG_PEEK) == b'a' and s.recv(100, socket.MSG_PEEK) == b''\n"
               "s.setsockopt(socket.SOL_SOCKET, %d, -1)\n" % (SO_PEEK_OFF, SO_PEEK_OFF),
               [b"a", b"", b"b"]),
    "first": ("assert s.recv(100) == b'a' and s.recv(100, socket.MSG_PEEK) == b''\n", [b"", b"b"]),
}


def test_program_peeked_empty_datagram_refused(h):
    """An empty datagram the program peeked at, among datagrams cryo sees:
    refused by name (socket, pid, fd, how many the kernel hides), nothing
    written, and the program still reads its whole queue."""
    for name, (peek, queue) in PROGRAM_PEEKS.items():
        w = start_abc(h, "udp-peeked-" + name, peek)
        fd = cryotest.read_text(w.path("fd")).strip()
        h.dump_refused(w.pid, ["pid %d fd %s" % (w.pid, fd), "UDP 127.0.0.1:",
                               "1 datagrams the kernel hides from peeking: empty datagrams already peeked at"])
        check_eq(queue_read(h, w, w.pid), repr(queue), "%s: the queue read by the program after the refused dump" % name)
        h.kill_and_reap(w)


def test_leave_running_twice(h):
    """dump -R twice in a row: a queue without empty datagrams is the same in
    both images (the second restored exactly); with one, the first dump marks
    it peeked, so the second is refused by name, and the first image still
    restores the queue exactly."""
    for name, peek, queue, second_ok in [("plain", "assert s.recv(100) == b'a' and s.recv(100) == b''", [b"b"], True),
                                         ("empty", "pass", [b"a", b"", b"b"], False)]:
        w = start_abc(h, "udp-twice-" + name, peek)
        first = h.mkdir("img-%s-1" % name)
        h.dump(w.pid, first, leave_running=True)
        image = first
        if second_ok:
            image = h.mkdir("img-%s-2" % name)
            h.dump(w.pid, image, leave_running=True)
        else:
            h.dump_refused(w.pid, ["UDP 127.0.0.1:", "1 datagrams the kernel hides from peeking"])
        h.kill_and_reap(w)
        pid = h.restore(image, detach=True, expected_pid=w.pid).pid
        check_eq(queue_read(h, w, pid), repr(queue), "%s: the queue read by the program restored from %s" % (name, image))
        h.cleanup_one(pid)


def test_hidden_datagram_in_own_network_namespace(h):
    """The count walks the socket's own network namespace (a tree that owns
    one; a socket of a namespace the describing thread is not in is counted
    by src/bpf's unit test): a fresh [b"a",
    b"", b"b"] there dumps, and the next dump, which the first one's peek
    hides the empty datagram from, is refused by the count; the program still
    reads its whole queue."""
    script = ("import subprocess\nsubprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n" +
              QUEUE_ABC.replace("PEEK", "pass") + "open('pid', 'w').write(str(os.getpid()))\n"
              "open('ready', 'w').write('x')\nwhile True: time.sleep(0.05)\n")
    u = h.start("udp-netns", ["/usr/bin/unshare", "--net", "--fork", "--", cryotest.PYTHON, "-c", script])
    deadline = time.monotonic() + 10
    while not os.path.exists(u.path("ready")) and time.monotonic() < deadline and cryotest.pid_alive(u.pid):
        time.sleep(0.02)
    check(os.path.exists(u.path("ready")), "the program under unshare never got ready: %s" % u.stderr())
    child = int(cryotest.read_text(u.path("pid")).strip())
    h.tracked_pids.append(child)
    fd = cryotest.read_text(u.path("fd")).strip()
    h.dump(u.pid, h.mkdir("img-netns"), leave_running=True)
    h.dump_refused(u.pid, ["pid %d fd %s" % (child, fd), "1 datagrams the kernel hides from peeking"])
    check_eq(queue_read(h, u, child), repr([b"a", b"", b"b"]), "the queue read by the program after the refused dump")
    os.kill(child, 9)
    h.wait_exit(u)


def test_without_exact_count(h):
    """Without the BPF iterator (CRYO_PRETEND_MISSING=bpf-iter-udp): `cryo
    check` says so; a socket with datagrams queued is refused by name with the
    reason unless --udp-queue-unverified, which dumps what cryo sees (for a
    queue no one peeked at, the whole queue: restored exactly); an empty
    queue needs no count, and one holding only hidden datagrams is refused by
    its memory, option or not."""
    with Pretend("bpf-iter-udp"):
        r = h.run_cryo(["check"], log=False, tag="check")
        check("FAIL  bpf-iter-udp" in r.stdout and "--udp-queue-unverified" in r.stdout,
              "cryo check names the missing UDP count and the option\n" + r.describe())
        empty = start_script(h, "udp-no-count-empty", "import socket, time\n"
                             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n")
        h.dump(empty.pid, h.mkdir("img-empty"), leave_running=True)
        h.kill_and_reap(empty)
        # Only an empty datagram queued, peeked at by a first dump: nothing
        # seen but memory held is refused even with the option.
        only = start_script(h, "udp-no-count-only-empty", "import socket, time\n"
                            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n"
                            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'', s.getsockname())\n")
        h.dump(only.pid, h.mkdir("img-only-empty"), leave_running=True, extra=["--udp-queue-unverified"])
        h.dump_refused(only.pid, ["UDP 127.0.0.1:", "can only be read by taking them (empty datagrams already "
                                  "peeked at"], extra_args=["--udp-queue-unverified"])
        h.kill_and_reap(only)
        w = start_abc(h, "udp-no-count")
        fd = cryotest.read_text(w.path("fd")).strip()
        h.dump_refused(w.pid, ["pid %d fd %s" % (w.pid, fd), "UDP 127.0.0.1:", "cannot count the datagrams of its "
                               "receive queue exactly: BPF iterator unavailable (taken as missing",
                               "--udp-queue-unverified"])
        # `cryo check -t` says the same, and takes the option as the dump does.
        r = h.run_cryo(["check", "-t", str(w.pid)], tag="check-t")
        check(r.rc == 1 and "cannot count the datagrams of its receive queue exactly" in r.stdout,
              "cryo check -t of the queue without the count\n" + r.describe())
        r = h.run_cryo(["check", "-t", str(w.pid), "--udp-queue-unverified"], tag="check-t-unverified")
        check(r.rc == 0 and "the tree can be checkpointed" in r.stdout,
              "cryo check -t --udp-queue-unverified\n" + r.describe())
        h.kill_and_reap(w)
        # A fresh one: the refused dump peeked at the empty datagram, hiding it.
        w = start_abc(h, "udp-unverified")
        images = h.mkdir("img-unverified")
        h.dump(w.pid, images, extra=["--udp-queue-unverified"])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    pid = h.restore(images, detach=True, expected_pid=w.pid).pid
    check_eq(queue_read(h, w, pid), repr([b"a", b"", b"b"]), "the queue read by the program restored")
    h.cleanup_one(pid)
    r = h.run_cryo(["check"], log=False, tag="check")
    check("ok    bpf-iter-udp" in r.stdout, "cryo check: the exact UDP count is available here\n" + r.describe())


def test_count_loaded_before_freeze(h):
    """The program that counts queued datagrams (a BPF iterator, verified by
    the kernel: milliseconds) is loaded before the tree is seized when its
    network namespace has a UDP socket, not while the tree is frozen; the
    queue is then counted and restored exactly."""
    w = start_abc(h, "udp-preload")
    images = h.mkdir("img-preload")
    r = h.dump(w.pid, images)
    log = r.log or ""
    loaded = log.find("UDP queue count (BPF iterator) loaded in")
    seized = log.find("tree of pid %d seized in" % w.pid)
    check(loaded >= 0 and seized >= 0 and loaded < seized,
          "the UDP count should be loaded before the tree is seized\n" + r.describe())
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    pid = h.restore(images, detach=True, expected_pid=w.pid).pid
    check_eq(queue_read(h, w, pid), repr([b"a", b"", b"b"]), "the queue read by the program restored")
    h.cleanup_one(pid)


TESTS = [
    test_udp_kill,
    test_udp_leave_running,
    test_udp_rewind,
    test_netlink_kill,
    test_netlink_rewind,
    test_refused_sockets,
    test_peeked_empty_datagram_refused,
    test_empty_datagram_among_others_dumped_again,
    test_program_peeked_empty_datagram_refused,
    test_leave_running_twice,
    test_hidden_datagram_in_own_network_namespace,
    test_without_exact_count,
    test_count_loaded_before_freeze,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
