#!/usr/bin/python3
"""End-to-end tests of `cryo restore --join-ns KIND:PATH`: a TCP listener
dumped in the host's network namespace is restored into a network namespace
the test made (`ip netns add`, a bind-mounted namespace file), and is
reachable there only; the namespace outlives the restored tree. Then the
refusals, by name: a file of another kind of namespace, a kind the image's
tree owned itself, pid.

Run: test_joinns.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, read_text  # noqa: E402

PORT = 47211
LISTENER = r"""
import os, socket, sys
ctl = sys.argv[1]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))
s.listen(8)
served = 0
with open(os.path.join(ctl, "ready.tmp"), "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(os.path.join(ctl, "ready.tmp"), os.path.join(ctl, "ready"))
while True:
    c, _ = s.accept()
    served += 1
    c.sendall(b"served %d by %d\n" % (served, os.getpid()))
    c.close()
"""
CONNECT = r"""
import socket, sys
try:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
except OSError as e:
    print("ERROR %s" % e.strerror)
    sys.exit(0)
print(c.makefile().readline().strip())
"""


class NetNs:
    """A network namespace of the test's own (ip netns add), lo up."""

    def __init__(self):
        self.name = "cryo-e2e-%d" % os.getpid()
        self.path = "/run/netns/" + self.name

    def __enter__(self):
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL, timeout=10)
        for cmd in (["ip", "netns", "add", self.name], ["ip", "-n", self.name, "link", "set", "lo", "up"]):
            p = subprocess.run(cmd, capture_output=True, timeout=10)
            check_eq(p.returncode, 0, "%s: %s" % (" ".join(cmd), p.stderr.decode(errors="replace")))
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], timeout=10)

    def connect(self, port=PORT):
        p = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", CONNECT, str(port)],
                           capture_output=True, timeout=20)
        check_eq(p.returncode, 0, "connect in %s: %s" % (self.name, p.stderr.decode(errors="replace")))
        return p.stdout.decode().strip()


def connect_host(port=PORT):
    p = subprocess.run([sys.executable, "-c", CONNECT, str(port)], capture_output=True, timeout=20)
    return p.stdout.decode().strip()


def listener(h):
    ctl = h.mkdir("listener")
    w = h.start("listener", [sys.executable, "-c", LISTENER, ctl, str(PORT)], ctl=ctl)
    h.wait_ready(w)
    check(connect_host().startswith("served 1 by %d" % w.pid), "the original serves on the host")
    return w


def test_listener_restored_into_netns(h):
    """Dumped on the host, restored with --join-ns net:/run/netns/NAME: the
    restored listener lives in that namespace, answers there (its count
    going on), and no longer on the host; killed, it leaves the namespace."""
    with NetNs() as ns:
        w = listener(h)
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        r = h.restore(images, extra=["--join-ns", "net:" + ns.path], expected_pid=w.pid)
        check_eq(os.stat("/proc/%d/ns/net" % r.pid).st_ino, os.stat(ns.path).st_ino,
                 "the restored listener's network namespace is the one joined")
        check_eq(ns.connect(), "served 2 by %d" % w.pid, "the restored listener answers in the namespace")
        check_eq(ns.connect(), "served 3 by %d" % w.pid, "and again")
        check(connect_host().startswith("ERROR"), "nothing listens on the host any more")
        h.cleanup_one(r.pid)
        check(os.path.exists(ns.path), "the namespace outlives the restored tree")


def test_join_refusals(h):
    """Refused before anything is made, the namespace untouched: a file of
    another kind of namespace, a file that is no namespace, pid, a kind the
    tree owned itself (a UTS namespace of its own)."""
    with NetNs() as ns:
        w = listener(h)
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        for arg, must in (("ipc:" + ns.path, "is a net namespace, not ipc"),
                          ("net:/etc/hostname", "is no namespace file"),
                          ("pid:/proc/self/ns/pid", "joining a PID namespace is not supported yet"),
                          ("nett:" + ns.path, "unknown namespace kind")):
            r = h.restore(images, expect_ok=False, extra=["--join-ns", arg])
            check(r.rc != 0 and must in r.message, "--join-ns %s refused naming %r: %s" % (arg, must, r.describe()))
        check(pid_alive(w.pid), "the original runs")
        check(connect_host().startswith("served 2"), "the original still serves on the host")
        check_eq(ns.connect(), "ERROR Connection refused", "nothing was restored into the namespace")
    p = subprocess.Popen(["unshare", "--uts", "/bin/sleep", "1000"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    h.tracked_pids.append(p.pid)
    h.popens[p.pid] = p
    h.wait_state(p.pid, "S", comm="sleep")
    images = h.mkdir("img-uts")
    h.dump(p.pid, images, leave_running=True)
    r = h.restore(images, expect_ok=False, extra=["--join-ns", "uts:/proc/self/ns/uts"])
    check(r.rc == 1 and "owned its own UTS namespace" in r.message, "join of an owned kind: %s" % r.describe())


TESTS = [
    test_listener_restored_into_netns,
    test_join_refusals,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
