#!/usr/bin/python3
"""End-to-end tests of listening sockets: a TCP listener on loopback and a
UNIX listener, each with a thread blocked in accept(2), are restored bound
and listening, and the blocked accepts go on; a listener with a connection
waiting and a connected socket are refused by name, the process untouched.

Run: test_sockets.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import socket
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


def start_server(h):
    w = h.start("server", [cryotest.PYTHON, "-c", SERVER])
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("port")) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(os.path.exists(w.path("port")), "the server did not start: %s" % cryotest.read_text(w.path("stderr"), ""))
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
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("img")])
    check(r.rc != 0, "the dump succeeded")
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
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("port")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    c = socket.create_connection(("127.0.0.1", int(open(w.path("port")).read())), timeout=5)
    try:
        expect_refused(h, w, ["waiting to be accepted", str(w.pid)])
    finally:
        c.close()


def test_connected_socket_refused(h):
    w = h.start("pair", [cryotest.PYTHON, "-c",
                         "import socket, time\n"
                         "a, b = socket.socketpair()\n"
                         "open('ready', 'w').write('x')\n"
                         "while True: time.sleep(0.05)\n"])
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
        time.sleep(0.02)
    expect_refused(h, w, ["socket", "not supported", str(w.pid)])


TESTS = [
    test_listeners_kill_and_rewind,
    test_listeners_leave_running,
    test_pending_connection_refused,
    test_connected_socket_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
