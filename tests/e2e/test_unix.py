#!/usr/bin/python3
"""End-to-end tests of connected UNIX sockets (tests/workloads/unixsk.c): a
parent and its child with socketpairs of each type whose queues are full in
both directions, sequence-numbered (message boundaries and zero-length
messages kept), a pair shut down one way, one whose peer was closed, names
(abstract and path) and options; in kill, leave-running and rewind modes.
What is not restored is refused by name: a peer outside the tree (naming the
outside process); file descriptors in flight (SCM_RIGHTS) are in
test_scm_rights.py. A real program:
nginx, a master and 2 workers talking over socketpairs, serves requests after
a restore (kill and rewind) and reloads its workers over those channels.

Run: test_unix.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import random
import signal
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402


def image_pids(h, images):
    return [p["pid"] for p in h.show_json(images)["processes"]]


def start(h):
    w = h.start_workload("unixsk")
    h.wait_ready(w)
    return w


def check_image(h, images, feature="unix-sockets"):
    img = h.show_json(images)
    check(feature in img["features"], "image features lack %r: %r" % (feature, img["features"]))


# The three modes, for a workload that verifies itself (`w`, started) and
# the feature its image must list.
def kill_mode(h, w, feature):
    h.verify_ok(w, when="before dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check_image(h, images, feature)
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (again, exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored %s exit status" % w.name)


def leave_running_mode(h, w):
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    # Nothing was consumed: the original goes on without a gap.
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.verify_ok(w, exit=True, when="of the original (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored %s exit status" % w.name)


def rewind_mode(h, w, instances):
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original")
    h.kill_and_reap(w)
    pids = image_pids(h, images)
    for i in range(instances):
        cryotest.wait_pids_gone(pids)
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d (exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def test_unixsk_kill(h):
    kill_mode(h, start(h), "unix-sockets")


def test_unixsk_leave_running(h):
    leave_running_mode(h, start(h))


def test_unixsk_rewind(h):
    rewind_mode(h, start(h), 3)


def expect_refused(h, w, words):
    images = h.mkdir("refused")
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images])
    check(r.rc != 0, "dump succeeded but should be refused (%s)" % words)
    for word in words:
        check(word in r.message, "refusal should name %r:\n%s" % (word, r.describe()))
    check_eq(os.listdir(images), [], "files written by a refused dump")
    check(cryotest.pid_alive(w.pid), "the refused process died")
    return r


def test_peer_outside_refused(h):
    """Connected to a socket the harness holds: refused, naming the harness."""
    srv = socket.socket(socket.AF_UNIX)
    path = os.path.join(h.mkdir("srv"), "s")
    srv.bind(path)
    srv.listen(1)
    try:
        w = h.start("client", [cryotest.PYTHON, "-c",
                               "import socket, sys, time\n"
                               "c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])\n"
                               "open('ready', 'w').write('x')\n"
                               "while True: time.sleep(0.05)\n", path])
        conn, _ = srv.accept()
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
                time.sleep(0.02)
            expect_refused(h, w, ["pid %d" % w.pid, "outside the tree", "pid %d" % os.getpid(), path])
        finally:
            conn.close()
    finally:
        srv.close()


def test_peer_credentials(h):
    """A socketpair made by an unprivileged process keeps its SO_PEERCRED ids."""
    d = h.mkdir("creds")
    os.chmod(d, 0o777)
    w = h.start("creds", [cryotest.PYTHON, "-c",
                          "import os, socket, struct, time\n"
                          "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
                          "a, b = socket.socketpair()\n"
                          "a.send(b'queued')\n"
                          "open('ready', 'w').write('x')\n"
                          "while True:\n"
                          "    if os.path.exists('verify'):\n"
                          "        os.unlink('verify')\n"
                          "        pid, uid, gid = struct.unpack('3i', b.getsockopt(socket.SOL_SOCKET, "
                          "socket.SO_PEERCRED, 12))\n"
                          "        st = os.fstat(a.fileno())\n"
                          "        open('result.tmp', 'w').write('%d %d %d %d %r' % (uid, gid, st.st_uid, st.st_gid, "
                          "b.recv(16, socket.MSG_PEEK)))\n"
                          "        os.rename('result.tmp', 'result')\n"
                          "    time.sleep(0.02)\n"], ctl=d)
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
        time.sleep(0.02)

    def ask(when):
        open(w.path("verify"), "w").close()
        deadline = time.monotonic() + 10
        while not os.path.exists(w.path("result")) and time.monotonic() < deadline:
            time.sleep(0.02)
        text = cryotest.read_text(w.path("result"), "")
        os.unlink(w.path("result"))
        check_eq(text, "65534 65534 65534 65534 b'queued'", "SO_PEERCRED ids, owner and queue %s" % when)

    ask("before the dump")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    ask("after restore")
    h.cleanup_one(r.pid)


def test_pending_client_refused(h):
    """A client whose connection waits in the accept queue of a listener
    outside the tree: refused by name, not taken for a closed peer."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    path = os.path.join(h.mkdir("srv"), "s")
    srv.bind(path)
    srv.listen(1)
    try:
        w = h.start("client", [cryotest.PYTHON, "-c",
                               "import socket, sys, time\n"
                               "c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); c.connect(sys.argv[1])\n"
                               "open('ready', 'w').write('x')\n"
                               "while True: time.sleep(0.05)\n", path])
        deadline = time.monotonic() + 10
        while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        expect_refused(h, w, ["pid %d" % w.pid, "waits to be accepted", path])
    finally:
        srv.close()


def start_pending(h):
    w = h.start_workload("unixpend.py")
    h.wait_ready(w)
    return w


def test_pending_kill(h):
    """Connections waiting in two listeners' accept queues (stream, seqpacket)
    come back in the same order, from the same clients, with the clients'
    ids, one shut down for writing; accepted after restore, they carry data
    both ways."""
    kill_mode(h, start_pending(h), "unix-pending-connections")


def test_pending_leave_running(h):
    leave_running_mode(h, start_pending(h))


def test_pending_rewind(h):
    rewind_mode(h, start_pending(h), 2)


def start_script(h, name, script, *args):
    w = h.start(name, [cryotest.PYTHON, "-c", script] + list(args))
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(os.path.exists(w.path("ready")), "%s never got ready: %s" % (name, w.stderr()))
    return w


def test_pending_unreadable_refused(h):
    """A pending connection whose client sent data, or whose client was
    closed: what waits on the server's end cannot be read before accept."""
    for sent, words in ((True, ["has sent", "not accepted yet"]), (False, ["client was closed"])):
        w = start_script(h, "pend", "import os, socket, sys, time\n"
                         "l = socket.socket(socket.AF_UNIX); l.bind(os.path.abspath('s')); l.listen(4)\n"
                         "c = socket.socket(socket.AF_UNIX); c.connect(os.path.abspath('s'))\n"
                         "if sys.argv[1] == '1': c.send(b'request')\n"
                         "else: c.close()\n"
                         "open('ready', 'w').write('x')\n"
                         "while True: time.sleep(0.05)\n", "1" if sent else "0")
        expect_refused(h, w, ["pid %d" % w.pid] + words)
        h.cleanup_one(w.pid)


def test_pending_client_outside_refused(h):
    """A listener of the tree with a connection from a client outside it:
    refused, naming the outside process."""
    w = start_script(h, "listener", "import os, socket, time\n"
                     "l = socket.socket(socket.AF_UNIX); l.bind(os.path.abspath('s')); l.listen(4)\n"
                     "open('ready', 'w').write('x')\n"
                     "while True: time.sleep(0.05)\n")
    c = socket.socket(socket.AF_UNIX)
    try:
        c.connect(w.path("s"))
        expect_refused(h, w, ["pid %d" % w.pid, "waiting to be accepted", "outside the tree", "pid %d" % os.getpid()])
    finally:
        c.close()


def ask(w, when, expected, timeout=10):
    """Writes <ctl>/verify, waits for <ctl>/result and compares it."""
    open(w.path("verify"), "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(w.path("result")) and time.monotonic() < deadline:
        time.sleep(0.02)
    text = cryotest.read_text(w.path("result"), "")
    if os.path.exists(w.path("result")):
        os.unlink(w.path("result"))
    check_eq(text, expected, "%s %s" % (w.name, when))


def dump_ext(h, w):
    images = h.mkdir("img")
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--ext-unix-sk"])
    check(r.rc == 0, "dump --ext-unix-sk failed:\n%s" % r.describe())
    h.reap_original(w)
    check_image(h, images, "unix-external-peers")
    cryotest.wait_pids_gone(image_pids(h, images))
    return images


EXT_STREAM = """import errno, os, socket, sys, time
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
while c.recv(1, socket.MSG_PEEK) != b'q': time.sleep(0.01)
open('ready', 'w').write('x')
while True:
    if os.path.exists('verify'):
        os.unlink('verify')
        got = c.recv(100, socket.MSG_PEEK)
        if os.path.exists('restored'):
            got = c.recv(100) + b'|' + c.recv(100)
            try:
                c.send(b'x')
                got += b'|sent'
            except BrokenPipeError:
                got += b'|EPIPE'
        open('result.tmp', 'w').write(repr(got))
        os.rename('result.tmp', 'result')
    time.sleep(0.02)
"""


def test_ext_peer_stream(h):
    """--ext-unix-sk, a stream connected to a server outside the tree: the
    dump lets the server go; restored, the client reads what was queued
    from it, then end of file, and writing fails (EPIPE): closed by its
    peer."""
    srv = socket.socket(socket.AF_UNIX)
    path = os.path.join(h.mkdir("srv"), "s")
    srv.bind(path)
    srv.listen(1)
    try:
        w = h.start("client", [cryotest.PYTHON, "-c", EXT_STREAM, path])
        conn, _ = srv.accept()
        conn.sendall(b"queued")
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
                time.sleep(0.02)
            ask(w, "before the dump", "b'queued'")
            images = dump_ext(h, w)
        finally:
            conn.close()
        open(w.path("restored"), "w").close()
        r = h.restore(images, detach=True, expected_pid=w.pid)
        ask(w, "after restore", "b'queued||EPIPE'")  # the queue, end of file, EPIPE
        h.cleanup_one(r.pid)
    finally:
        srv.close()


EXT_DGRAM = """import os, socket, sys, time
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if len(sys.argv) > 2: d.bind(sys.argv[2])
d.connect(sys.argv[1])
n = 0
d.send(b'hello %d' % n)
open('ready', 'w').write('x')
while True:
    if os.path.exists('verify'):
        os.unlink('verify')
        n += 1
        d.send(b'hello %d' % n)
        open('result.tmp', 'w').write(repr(d.getpeername()))
        os.rename('result.tmp', 'result')
    time.sleep(0.02)
"""


def test_ext_peer_datagram(h):
    """--ext-unix-sk, a datagram socket connected to one outside the tree
    (syslog's /dev/log): connected again by name at each restore (rewind),
    its messages reach the outside socket, numbered on from the image."""
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(h.mkdir("log"), "log")
    log.bind(path)
    log.settimeout(10)
    try:
        w = h.start("logger", [cryotest.PYTHON, "-c", EXT_DGRAM, path])
        check_eq(log.recv(100), b"hello 0", "first message")
        deadline = time.monotonic() + 10
        while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        ask(w, "before the dump", repr(path))
        check_eq(log.recv(100), b"hello 1", "message before the dump")
        images = dump_ext(h, w)
        for i in range(2):
            cryotest.wait_pids_gone([w.pid])
            r = h.restore(images, detach=True, expected_pid=w.pid)
            ask(w, "after restore %d" % (i + 1), repr(path))
            check_eq(log.recv(100), b"hello 2", "message after restore %d" % (i + 1))
            h.cleanup_one(r.pid)
    finally:
        log.close()


def test_ext_peer_refusals(h):
    """Without --ext-unix-sk a peer outside is refused (test_peer_outside_refused);
    with it, a datagram socket with messages queued from that peer is still
    refused (cryo cannot send them in its name)."""
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d = h.mkdir("log")
    path = os.path.join(d, "log")
    log.bind(path)
    try:
        mine = os.path.join(d, "mine")
        w = h.start("logger", [cryotest.PYTHON, "-c", EXT_DGRAM, path, mine])
        deadline = time.monotonic() + 10
        while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        log.sendto(b"reply", mine)
        images = h.mkdir("refused")
        r = h.run_cryo(["dump", "-t", str(w.pid), "-D", images, "--ext-unix-sk"])
        check(r.rc != 0, "dump --ext-unix-sk of a socket with messages from outside succeeded")
        for word in ["pid %d" % w.pid, "messages queued from its peer outside the tree"]:
            check(word in r.message, "refusal should name %r:\n%s" % (word, r.describe()))
        check(cryotest.pid_alive(w.pid), "the refused process died")
    finally:
        log.close()


NGINX = "/usr/sbin/nginx"
NGINX_CONF = """daemon off;
master_process on;
worker_processes 2;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  server { listen 127.0.0.1:%(port)d; location / { return 200 "hello from $pid\\n"; } }
}
"""


def free_port():
    """A free port below ip_local_port_range: nginx binds it only later, and
    again at each restore, so it must not be one the kernel hands out to
    other programs' outgoing connections meanwhile (EADDRINUSE under load)."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    cryotest.fail("no free port below %d" % low)


def children(pid):
    try:
        return [int(c) for c in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    except OSError:
        return []


def get(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
        return r.read().decode()


def wait_workers(master, old, when):
    """Until the master has 2 workers, none of them in `old` (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = children(master)
        if len(kids) == 2 and not set(kids) & set(old):
            return kids
        time.sleep(0.05)
    cryotest.fail("nginx %s: workers %r, expected 2 new ones (old %r)" % (when, children(master), old))


def check_serves(port, workers, when):
    served = set()
    for _ in range(8):
        text = get(port)
        check(text.startswith("hello from "), "nginx %s answered %r" % (when, text))
        served.add(int(text.split()[-1]))
    check(served <= set(workers), "nginx %s: answered by %r, workers are %r" % (when, served, workers))


def start_nginx(h):
    check(os.access(NGINX, os.X_OK), "%s is missing (install nginx-light, scripts/install-deps.sh)" % NGINX)
    d = h.mkdir("nginx")
    port = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF % {"dir": d, "port": port})
    w = h.start("nginx-run", [NGINX, "-c", os.path.join(d, "nginx.conf"), "-p", d])
    workers = wait_workers(w.pid, [], "at start")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            get(port)
            break
        except OSError:
            time.sleep(0.05)
    check_serves(port, workers, "before the dump")
    return w, port, workers


def after_restore(h, master, port, workers, when):
    check_eq(sorted(children(master)), sorted(workers), "nginx workers %s" % when)
    check_serves(port, workers, when)
    # A reload: the master tells the old workers to quit over the channels
    # (socketpairs) and starts new ones, which serve.
    os.kill(master, signal.SIGHUP)
    new = wait_workers(master, workers, "reloaded " + when)
    check_serves(port, new, "reloaded " + when)
    os.kill(master, signal.SIGQUIT)
    check_eq(h.wait_exit(master), ("exit", 0), "nginx master exit status " + when)
    cryotest.wait_pids_gone(new)  # they hold the port


def test_nginx_kill(h):
    w, port, workers = start_nginx(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check_image(h, images)
    cryotest.wait_pids_gone(image_pids(h, images))
    r = h.restore(images, detach=True, expected_pid=w.pid)
    after_restore(h, r.pid, port, workers, "after restore")


def test_nginx_rewind(h):
    w, port, workers = start_nginx(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    check_serves(port, workers, "after dump --leave-running")
    # The master first: a master that saw a worker die would start another
    # one, which would hold the port after it (the restore then fails to bind).
    h.kill_and_reap(w)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    for i in range(2):
        cryotest.wait_pids_gone(image_pids(h, images))
        r = h.restore(images, detach=True, expected_pid=w.pid)
        after_restore(h, r.pid, port, workers, "after rewind %d" % (i + 1))


TESTS = [
    test_unixsk_kill,
    test_unixsk_leave_running,
    test_unixsk_rewind,
    test_peer_outside_refused,
    test_peer_credentials,
    test_pending_client_refused,
    test_pending_kill,
    test_pending_leave_running,
    test_pending_rewind,
    test_pending_unreadable_refused,
    test_pending_client_outside_refused,
    test_ext_peer_stream,
    test_ext_peer_datagram,
    test_ext_peer_refusals,
    test_nginx_kill,
    test_nginx_rewind,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
