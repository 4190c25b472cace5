#!/usr/bin/python3
"""End-to-end tests of TCP connections to a peer outside the tree restored
more than once, and of the network lock's cost (src/net/tcp_rewind.cc,
src/net/net_lock.cc).

A peer outside the tree is not rewound with it: once the original went on
with the connection (dump --leave-running) or the image was restored once
(its lock gone), the peer has acknowledged bytes the image does not hold or
reset the connection. Such a restore is refused by name before anything is
made, also beside the running original (whose connection goes on untouched);
`--tcp-close` restores it reset by its peer. A connection with both ends in
the tree rewinds (test_tcp.py test_pair_rewind).

The lock is one nft(8) script per dump, whatever the number of connections:
the dump's and the restore's nft runs (their debug log) are as many for 8
connections as for 1.

Run: test_tcp_outside.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_tcp import (check_flows, check_no_lock, first_error, kill_tree, start_peer_and_client, unlocking,  # noqa: E402
                      wait_file)


def restore_refused(h, images, must, extra=()):
    """A restore of `images` refused by name, before anything is made: no
    process of the image left, no lock."""
    r = h.run_cryo(["restore", "-D", images, "--detach"] + list(extra))
    check(r.rc != 0, "the restore succeeded: %s" % r.describe())
    for word in must:
        check(word in r.message, "the refusal should say %r: %s" % (word, r.message))
    check_no_lock("after the refused restore")
    return r


def restore_closed(h, w, images):
    """restore --tcp-close: the connection comes back reset by its peer."""
    r = h.run_cryo(["restore", "-D", images, "--detach", "--tcp-close"])
    check(r.rc == 0, "restore --tcp-close failed: %s" % r.describe())
    check_no_lock("after restore --tcp-close")
    err = first_error(w.ctl, "client")
    check(err is not None and ("ConnectionResetError" in err or "end of stream" in err or "BrokenPipeError" in err),
          "the restored client's stream should be reset: %r" % err)
    cryotest.wait_pids_gone([w.pid])


def forget_errors(w):
    """The original's end saw its process die: its files go."""
    for name in ("recv-client", "error-client"):
        try:
            os.unlink(w.path(name))
        except FileNotFoundError:
            pass


def test_rewind_refused_by_name(h):
    """dump --leave-running of a client whose peer is outside the tree (the
    dump warns that it restores only with --tcp-close): restored beside the running original (--pidns new), then after the
    original was killed, the restore is refused naming the connection, before
    anything is made; the original's connection goes on untouched meanwhile.
    --tcp-close restores it reset."""
    peer, w = start_peer_and_client(h)
    images = h.mkdir("img")
    r = h.dump(w.pid, images, leave_running=True)
    check_no_lock("after a dump --leave-running")
    # The dump says so already.
    check("pid %d fd" % w.pid in r.stderr and "only with --tcp-close" in r.stderr,
          "the dump should warn that the connection restores only with --tcp-close: %s" % r.describe())
    must = ("pid %d fd" % w.pid, "TCP 127.0.0.1:", "peer is outside the tree", "--leave-running", "--tcp-close")
    restore_refused(h, images, must, extra=("--pidns", "new"))
    # Both ends of the original's connection go on: nothing was made.
    check_flows([(w.ctl, "client"), (peer.ctl, "peer")], "of the original after the refused restore beside it")
    kill_tree(h, w.pid)  # the peer sees the original's end close
    forget_errors(w)
    restore_refused(h, images, must)
    check(not cryotest.pid_alive(w.pid), "pid %d runs after the refused restore" % w.pid)
    restore_closed(h, w, images)
    h.cleanup_one(peer.pid)


def test_second_restore_refused(h):
    """A kill-mode image of a client whose peer is outside the tree restores
    once (its lock held the peer's end); the same image again is refused by
    name (its lock is gone: the peer went on with the first restore), or
    restored reset with --tcp-close."""
    peer, w = start_peer_and_client(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_no_lock("after the first restore")
    check_flows([(w.ctl, "client"), (peer.ctl, "peer")], "after the first restore")
    kill_tree(h, r.pid)
    forget_errors(w)
    restore_refused(h, images, ("pid %d fd" % w.pid, "peer is outside the tree", "is gone", "--tcp-close"))
    check(not cryotest.pid_alive(w.pid), "pid %d runs after the refused restore" % w.pid)
    restore_closed(h, w, images)
    h.cleanup_one(peer.pid)


def test_unlocked_image_refused(h):
    """`cryo unlock DIR` frees the peer's end: the image's connection to it is
    refused at restore from then on."""
    peer, w = start_peer_and_client(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    r = h.run_cryo(["unlock", images])
    check(r.rc == 0, "cryo unlock failed: %s" % r.describe())
    restore_refused(h, images, ("pid %d fd" % w.pid, "peer is outside the tree", "is gone"))
    h.cleanup_one(peer.pid)


# N connections, both ends in the process, 1000 bytes queued each way on
# each; on "check" each end reads what was queued and a byte goes each way.
MANY = r"""
import os, socket, sys, time
n = int(sys.argv[1])
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(64)
pairs = []
for i in range(n):
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    c.sendall(b"c%07d" % i * 125)
    s.sendall(b"s%07d" % i * 125)
    pairs.append((c, s))
l.close()
open("ready", "w").write("x")
while not os.path.exists("check"):
    time.sleep(0.02)
def recv_exact(sock, k):
    out = b""
    while len(out) < k:
        d = sock.recv(k - len(out))
        if not d:
            return out
        out += d
    return out
bad = 0
for i, (c, s) in enumerate(pairs):
    bad += recv_exact(c, 1000) != b"s%07d" % i * 125 or recv_exact(s, 1000) != b"c%07d" % i * 125
    c.sendall(b"x")
    s.sendall(b"y")
    bad += recv_exact(s, 1) != b"x" or recv_exact(c, 1) != b"y"
# Written whole then renamed: the test reads `result` as soon as it exists.
open("result.tmp", "w").write("verified\n" if bad == 0 else "FAIL: %d\n" % bad)
os.rename("result.tmp", "result")
while True:
    time.sleep(0.05)
"""


def nft_runs(log):
    return re.findall(r"network lock: nft ([^\n]*)", log or "")


def dump_and_restore_counting(h, n):
    """The nft runs of the dump (kill mode) and of the restore of a process
    holding `n` connections; the restored connections verified."""
    w = h.start("many%d" % n, [cryotest.PYTHON, "-c", MANY, str(n)])
    wait_file(w, "ready")
    images = h.mkdir("img%d" % n)
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "-vv"], tag="dump-%d" % n)
    check(r.rc == 0, "dump of %d connections failed: %s" % (n, r.describe()))
    dump = nft_runs(r.log)
    h.reap_original(w)
    r = h.run_cryo(["restore", "-D", images, "--detach", "-vv"], tag="restore-%d" % n)
    check(r.rc == 0, "restore of %d connections failed: %s" % (n, r.describe()))
    h.tracked_pids.append(w.pid)
    restore = nft_runs(r.log)
    check_no_lock("after the restore of %d connections" % n)
    open(w.path("check"), "w").write("x")
    wait_file(w, "result", timeout=30)
    check_eq(cryotest.read_text(w.path("result")), "verified\n", "the %d restored connections" % n)
    h.cleanup_one(w.pid)
    return dump, restore


def test_one_nft_run_per_dump(h):
    """The network lock of a dump of 8 connections (16 sockets) takes as
    many nft runs as that of 1: one script locks them all; the restore
    removes it in one run."""
    dump1, restore1 = dump_and_restore_counting(h, 1)
    dump8, restore8 = dump_and_restore_counting(h, 8)
    h.note("nft runs: dump %r, restore %r (1 connection); dump %r, restore %r (8)" % (dump1, restore1, dump8, restore8))
    check(len(dump1) >= 1 and len(restore1) >= 1, "no nft run in the debug logs: dump %r restore %r" % (dump1, restore1))
    check_eq(len(dump8), len(dump1), "nft runs of the dump of 8 connections (%r) against 1 (%r)" % (dump8, dump1))
    check_eq(len(restore8), len(restore1), "nft runs of the restore of 8 connections")
    check_eq(len(restore8), 1, "nft runs of a restore whose connections are all inside the tree: %r" % restore8)


TESTS = [unlocking(t) for t in [
    test_rewind_refused_by_name,
    test_second_restore_refused,
    test_unlocked_image_refused,
    test_one_nft_run_per_dump,
]]

if __name__ == "__main__":
    rc = cryotest.main(TESTS, description=__doc__)
    check_no_lock("after the suite")
    sys.exit(rc)
