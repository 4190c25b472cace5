#!/usr/bin/python3
"""End-to-end tests of listening sockets: a TCP listener on loopback and a
UNIX listener, each with a thread blocked in accept(2), are restored bound
and listening, and the blocked accepts go on; a listener with a connection
waiting is refused by name, the process untouched (TCP connections:
test_tcp.py).
A UNIX listener's file keeps its owner, mode and times; its options, backlog
and peer credentials (as clients see them) are restored; one whose file was
removed stays without one; one whose path now leads to another listener's
file is refused.

Run: test_sockets.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402

SERVER = r"""
import os, socket, sys, threading, time
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 0))
t.listen(8)
u = socket.socket(socket.AF_UNIX)
u.bind(os.path.abspath("sock"))
u.listen(8)
served = [0, 0]
def serve(s, i):
    while True:
        c, _ = s.accept()
        data = c.recv(16)
        c.sendall(b"ok " + data)
        c.recv(1)  # the client closes first: no TIME_WAIT on the listener's port
        c.close()
        served[i] += 1
for i, s in enumerate((t, u)):
    threading.Thread(target=serve, args=(s, i), daemon=True).start()
open("port.tmp", "w").write(str(t.getsockname()[1]))
os.rename("port.tmp", "port")
while True:
    time.sleep(0.05)
"""


def wait_file(w, name):
    """Until the program w writes `name` in its control directory (bounded)."""
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path(name)) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(os.path.exists(w.path(name)), "%s did not start: %s" % (w.name, cryotest.read_text(w.path("stderr"), "")))


def start_server(h):
    w = h.start("server", [cryotest.PYTHON, "-c", SERVER])
    wait_file(w, "port")
    time.sleep(0.2)  # both threads blocked in accept
    return w, int(open(w.path("port")).read())


def ask(family, address, msg):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(address)
        s.sendall(msg)
        return s.recv(64)
    finally:
        s.close()


def check_serves(w, port, when):
    check_eq(ask(socket.AF_INET, ("127.0.0.1", port), b"tcp"), b"ok tcp", "TCP answer %s" % when)
    check_eq(ask(socket.AF_UNIX, w.path("sock"), b"unix"), b"ok unix", "UNIX answer %s" % when)


def test_listeners_kill_and_rewind(h):
    w, port = start_server(h)
    check_serves(w, port, "before the dump")
    time.sleep(0.1)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    img = h.show_json(images)
    check("listen-sockets" in img["features"], "image features lack listen-sockets: %r" % img["features"])
    for i in range(2):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        check_serves(w, port, "after restore %d" % (i + 1))
        h.cleanup_one(r.pid)
        cryotest.wait_pids_gone([r.pid])


def test_listeners_leave_running(h):
    w, port = start_server(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    check_serves(w, port, "of the original after dump --leave-running")
    h.cleanup_one(w.pid)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_serves(w, port, "after restore")
    h.cleanup_one(r.pid)


def expect_refused(h, w, words):
    images = h.mkdir("img")
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images])
    check(r.rc != 0, "the dump succeeded")
    check_eq(sorted(os.listdir(images)), [], "files in the image directory after the refused dump")
    for word in words:
        check(word in r.message, "the error should say %r: %s" % (word, r.message))
    st = proc_stat(w.pid)
    check(st is not None and st["state"] in ("S", "R"), "process disturbed by the refused dump: %r" % (st,))
    check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")


def test_pending_connection_refused(h):
    w = h.start("listener", [cryotest.PYTHON, "-c",
                             "import socket, time\n"
                             "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(4)\n"
                             "open('port', 'w').write(str(s.getsockname()[1]))\n"
                             "while True: time.sleep(0.05)\n"])
    wait_file(w, "port")
    time.sleep(0.1)
    c = socket.create_connection(("127.0.0.1", int(open(w.path("port")).read())), timeout=5)
    try:
        expect_refused(h, w, ["waiting to be accepted", str(w.pid)])
    finally:
        c.close()


# A UNIX server whose socket file has its own owner, mode and times, with
# options set, a small backlog, and listening under other effective ids
# (clients see them as its SO_PEERCRED); it reports what it observes of itself.
UNIX_SERVER = r"""
import json, os, socket, struct, time
path = os.path.abspath("srv.sock")
u = socket.socket(socket.AF_UNIX)
u.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 7, 0))
u.bind(path)
os.chown(path, 1234, 5678)
os.chmod(path, 0o640)
os.utime(path, ns=(1000000000000000000, 1100000000000000000))
os.setgroups([42, 43])
os.setegid(5678)
os.seteuid(1234)
u.listen(3)
os.seteuid(0)
os.setegid(0)
gone = socket.socket(socket.AF_UNIX)  # bound, then its file removed
gone.bind(os.path.abspath("gone.sock"))
gone.listen(1)
os.unlink("gone.sock")
def observe():
    st = os.stat(path)
    return {"file": [st.st_uid, st.st_gid, oct(st.st_mode & 0o7777), st.st_atime_ns, st.st_mtime_ns],
            "opts": [u.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED),
                     u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                     struct.unpack("ll", u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))[0]],
            "gone": [os.path.exists("gone.sock"), gone.getsockname(),
                     gone.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]}
first = observe()
open("first.tmp", "w").write(json.dumps(first))
os.rename("first.tmp", "first")
while True:
    if os.path.exists("verify"):
        os.unlink("verify")
        now = observe()
        open("result", "w").write(("OK " if now == first else "FAIL %r != " % (now,)) + json.dumps(first) + "\n")
    time.sleep(0.02)
"""


def unix_peer(path):
    """(pid, uid, gid) the listener at path gives a client (SO_PEERCRED)."""
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    try:
        c.connect(path)
        pid, uid, gid = struct.unpack("iII", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        groups = c.getsockopt(socket.SOL_SOCKET, 59, 64)  # SO_PEERGROUPS
        return pid, uid, gid, sorted(struct.unpack("%dI" % (len(groups) // 4), groups))
    finally:
        c.close()


def unix_backlog(path):
    """The listen(2) backlog ss reports for the listener at path (Send-Q)."""
    out = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 5 and f[4] == path:
            return int(f[3])
    cryotest.fail("ss lists no listener at %s:\n%s" % (path, out))


def test_unix_socket_file_options_and_peer(h):
    w = h.start("unixsrv", [cryotest.PYTHON, "-c", UNIX_SERVER])
    wait_file(w, "first")
    path = w.path("srv.sock")
    peer, backlog = unix_peer(path), unix_backlog(path)
    check_eq(peer, (w.pid, 1234, 5678, [42, 43]), "the listener's peer credentials before the dump")
    check_eq(backlog, 3, "backlog before the dump")
    # The server never accepts: the connection just made waits in its queue.
    images = h.mkdir("img")
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images])
    check(r.rc != 0 and "waiting to be accepted" in r.message, "a waiting connection must be refused: %s" % r.message)
    h.cleanup_one(w.pid)

    w = h.start("unixsrv2", [cryotest.PYTHON, "-c", UNIX_SERVER])
    wait_file(w, "first")
    path = w.path("srv.sock")
    check(os.path.exists(path), "the server did not start: %s" % w.stderr())
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(2):  # kill mode, then rewind
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, when="after restore %d" % (i + 1))
        check_eq(unix_backlog(path), 3, "backlog after restore %d" % (i + 1))
        check_eq(unix_peer(path), (w.pid, 1234, 5678, [42, 43]),
                 "the listener's peer credentials after restore %d" % (i + 1))
        h.cleanup_one(r.pid)
        cryotest.wait_pids_gone([r.pid])
    h.check_feature(images, "socket-state")


def test_two_listeners_on_one_path_refused(h):
    w = h.start("samepath", [cryotest.PYTHON, "-c",
                             "import os, socket, time\n"
                             "a = socket.socket(socket.AF_UNIX); a.bind(os.path.abspath('s')); a.listen(1)\n"
                             "os.unlink('s')\n"
                             "b = socket.socket(socket.AF_UNIX); b.bind(os.path.abspath('s')); b.listen(1)\n"
                             "open('ready', 'w').write('x')\n"
                             "while True: time.sleep(0.05)\n"])
    wait_file(w, "ready")
    expect_refused(h, w, ["UNIX socket %s" % w.path("s"), "now leads to another file", str(w.pid)])


TESTS = [
    test_listeners_kill_and_rewind,
    test_listeners_leave_running,
    test_pending_connection_refused,
    test_unix_socket_file_options_and_peer,
    test_two_listeners_on_one_path_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
