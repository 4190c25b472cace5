#!/usr/bin/python3
"""End-to-end tests of real network programs checkpointed while a client
outside the tree holds a connection to them, verified from outside (issue 14,
"Must hold").

- A Java 17 com.sun.net.httpserver program (tests/workloads/HttpCounter.java)
  and python's http.server (ThreadingHTTPServer, HTTP/1.1), each serving a
  counter: a client outside the tree holds one keep-alive connection (the
  same TCP socket for every request, its port echoed by the server).
  Kill mode: the same connection goes on answering after the restore, the
  counter continuing. Rewind (dump --leave-running, the original goes on and
  is killed, the image restored): the outside peer went on with the original,
  so its connection is refused by name at restore, before anything is made;
  with --tcp-close the restore goes on, the old connection comes back reset
  and a new connection is served from the image's counter.
- nginx (a master and 2 workers): a keep-alive connection held across a
  kill-mode checkpoint is answered by the same worker after the restore;
  rewound, refused naming that worker's connection, or with --tcp-close
  restored without it.
- tmux with a client attached from outside the tree (`tmux attach` on a pty
  this test owns): the tmux server is the tree. Without --ext-unix-sk the
  dump is refused naming the client process; with it alone, naming the
  client's terminal the server holds (--ext-tty); with both, in kill mode the
  client sees its server go, the server comes back with that client's
  connection closed by its peer, drops the client and keeps the session: a
  shell loop in it counts on, the shell keeps its variables, and a new
  client attaches; the same after dump --leave-running, the original
  killed and the image restored twice. The client's terminal replaced by another pty of its
  number before the restore: the restore is refused naming it.

Every process started here is killed by pid at the end; no nftables table of
cryo's is left.

Run: test_realnet.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_tcp import check_no_lock, lock_tables, unlocking  # noqa: E402
import test_unix  # noqa: E402


def wait_for(cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            cryotest.fail("%s: not within %.0f s" % (what, timeout))
        time.sleep(0.02)


class KeepAlive:
    """One HTTP/1.1 connection held open: every request goes over the same
    socket (no reconnection, unlike http.client)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.port = self.sock.getsockname()[1]
        self.buf = b""

    def _more(self, when):
        try:
            d = self.sock.recv(65536)
        except OSError as e:
            cryotest.fail("the keep-alive connection %s: %r" % (when, e))
        check(d, "the keep-alive connection %s: closed by the server" % when)
        self.buf += d

    def get(self, when, path="/"):
        """(status line, headers dict, body) of one GET on this connection."""
        try:
            self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
                              % path.encode())
        except OSError as e:
            cryotest.fail("the keep-alive connection %s: sending: %r" % (when, e))
        while b"\r\n\r\n" not in self.buf:
            self._more(when)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        n = int(headers.get("content-length", "-1"))
        check(n >= 0, "the answer %s has no Content-Length: %r" % (when, head))
        while len(self.buf) < n:
            self._more(when)
        body, self.buf = self.buf[:n], self.buf[n:]
        check(lines[0].startswith("HTTP/1.1 200"), "the answer %s: %r" % (when, lines[0]))
        check(headers.get("connection", "").lower() != "close", "the server closes the connection %s" % when)
        return lines[0], headers, body.decode()

    def count(self, when):
        """The counter of a counting server's answer, checked to name this
        connection's port."""
        _, _, body = self.get(when)
        m = re.fullmatch(r"count (\d+) peer (\d+)\n", body)
        check(m is not None, "the answer %s: %r" % (when, body))
        check_eq(int(m.group(2)), self.port, "the client port the server saw %s (the same connection)" % when)
        return int(m.group(1))

    def broken(self):
        """What this connection gives now: a reset, an end of stream, or an
        answer (None: no error within 5 s)."""
        self.sock.settimeout(5)
        try:
            self.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            d = self.sock.recv(65536)
            return "end of stream" if not d else None
        except (ConnectionResetError, BrokenPipeError) as e:
            return repr(e)
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


def fresh_count(port, when):
    c = KeepAlive(port)
    try:
        return c.count(when)
    finally:
        c.close()


# ---------------------------------------------------------------- servers

JAVA = "/usr/bin/java"
# As test_tty.py's Java: no hsperfdata file, a small heap, the serial
# collector. An idle keep-alive connection is closed after
# sun.net.httpserver.idleInterval (30 s by default): far beyond the test.
JAVA_FLAGS = ["-XX:-UsePerfData", "-Xmx64m", "-XX:+UseSerialGC", "-Dsun.net.httpserver.idleInterval=3600"]

# python's http.server: ThreadingHTTPServer, HTTP/1.1 (keep-alive), a counter.
PY_SERVER = r"""
import http.server, os, threading
lock = threading.Lock()
count = [0]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with lock:
            count[0] += 1
            n = count[0]
        body = ("count %d peer %d\n" % (n, self.client_address[1])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
open("port.tmp", "w").write(str(srv.server_address[1]))
os.rename("port.tmp", "port")
srv.serve_forever()
"""


def start_java(h):
    cls = os.path.join(h.workloads, "HttpCounter.class")
    check(os.path.isfile(cls), "%s is missing: javac (openjdk-17-jdk-headless) was not found at build time" % cls)
    check(os.path.isfile(JAVA), "%s is missing (openjdk-17-jre-headless)" % JAVA)
    ctl = h.mkdir("java-http")
    return h.start("java-http", [JAVA] + JAVA_FLAGS + ["-cp", h.workloads, "HttpCounter", ctl], ctl)


def start_python(h):
    return h.start("py-http", [cryotest.PYTHON, "-c", PY_SERVER])


def server_port(w, timeout=60.0):
    def port():
        txt = cryotest.read_text(w.path("port"))
        if txt is None and not cryotest.pid_alive(w.pid):
            cryotest.fail("%s exited before listening: %s" % (w.name, w.stderr()[-2000:]))
        return int(txt) if txt and txt.strip().isdigit() else None
    return wait_for(port, "%s listening" % w.name, timeout)


def counter_kill(h, start):
    """Kill mode: the keep-alive connection outside the tree goes on after
    the restore, the counter continuing; a new connection is served too."""
    w = start(h)
    port = server_port(w)
    c = KeepAlive(port)
    try:
        check_eq(c.count("before the dump"), 1, "the first count")
        check_eq(c.count("before the dump"), 2, "the second count")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        check_eq(len(lock_tables()), 1, "lock tables between the dump and the restore")
        h.restore(images, detach=True, expected_pid=w.pid)
        check_no_lock("after the restore")
        check_eq(c.count("after the restore"), 3, "the count on the same connection after the restore")
        check_eq(c.count("after the restore"), 4, "the next count on the same connection")
        check_eq(fresh_count(port, "on a new connection after the restore"), 5, "the count on a new connection")
        check_eq(c.count("after a new connection came and went"), 6, "the count on the held connection")
    finally:
        c.close()
    h.cleanup_one(w.pid)


def counter_rewind(h, start):
    """Rewind: the original answers once more after dump --leave-running and
    is killed; restoring the image is refused by name (the outside client's
    connection went on with the original) before anything is made;
    --tcp-close restores it: the held connection is reset, a new one is
    served from the image's counter."""
    w = start(h)
    port = server_port(w)
    c = KeepAlive(port)
    try:
        check_eq(c.count("before the dump"), 1, "the first count")
        check_eq(c.count("before the dump"), 2, "the second count")
        images = h.mkdir("img")
        r = h.dump(w.pid, images, leave_running=True)
        check("only with --tcp-close" in r.stderr,
              "the dump should warn that the connection restores only with --tcp-close: %s" % r.describe())
        check_no_lock("after a dump --leave-running")
        check_eq(c.count("from the original after the dump"), 3, "the original's count")
        h.kill_and_reap(w)
        cryotest.wait_pids_gone([w.pid])
        r = h.run_cryo(["restore", "-D", images, "--detach"])
        check(r.rc != 0, "the rewind restore of an outside peer's connection succeeded: %s" % r.describe())
        # A JVM's sockets are IPv6 ones (v4-mapped addresses): named TCP6.
        conn = "127.0.0.1:%d <-> 127.0.0.1:%d" % (port, c.port)
        check("TCP " + conn in r.message or "TCP6 " + conn in r.message,
              "the refusal should name the connection %r: %s" % (conn, r.message))
        for word in ("pid %d fd" % w.pid, "peer is outside the tree", "--tcp-close"):
            check(word in r.message, "the refusal should say %r: %s" % (word, r.message))
        check(not cryotest.pid_alive(w.pid), "pid %d runs after the refused restore" % w.pid)
        check_no_lock("after the refused restore")
        h.restore(images, detach=True, expected_pid=w.pid, extra=["--tcp-close"])
        check_no_lock("after restore --tcp-close")
        # The image's counter (2), not the original's (3).
        check_eq(fresh_count(port, "on a new connection after the rewind"), 3, "the rewound count")
        check_eq(fresh_count(port, "on a second new connection after the rewind"), 4, "the next rewound count")
        err = c.broken()
        check(err is not None, "the connection the original held still answers after the rewind")
    finally:
        c.close()
    check(cryotest.pid_alive(w.pid), "the restored server died")
    h.cleanup_one(w.pid)


def test_java_httpserver_kill(h):
    counter_kill(h, start_java)


def test_java_httpserver_rewind(h):
    counter_rewind(h, start_java)


def test_python_http_server_kill(h):
    counter_kill(h, start_python)


def test_python_http_server_rewind(h):
    counter_rewind(h, start_python)


# ---------------------------------------------------------------- nginx

def nginx_get(c, when):
    _, _, body = c.get(when)
    check(body.startswith("hello from "), "nginx %s answered %r" % (when, body))
    return int(body.split()[-1])


def test_nginx_keepalive_kill(h):
    """nginx (master + 2 workers) checkpointed in kill mode while a client
    outside holds a keep-alive connection: the same worker answers on it
    after the restore; new connections are served; the restored master
    reloads its workers (test_unix.py's checks)."""
    w, port, workers = test_unix.start_nginx(h)
    c = KeepAlive(port)
    try:
        worker = nginx_get(c, "before the dump")
        check(worker in workers, "answered by %d, workers %r" % (worker, workers))
        check_eq(nginx_get(c, "before the dump, again"), worker, "the worker of the keep-alive connection")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        cryotest.wait_pids_gone(test_unix.image_pids(h, images))
        r = h.restore(images, detach=True, expected_pid=w.pid)
        check_no_lock("after the restore")
        for i in range(3):
            check_eq(nginx_get(c, "after the restore (%d)" % i), worker,
                     "the worker answering the held connection after the restore")
    finally:
        c.close()
    test_unix.after_restore(h, r.pid, port, workers, "after restore")


def test_nginx_keepalive_rewind(h):
    """nginx rewound (dump --leave-running, the original killed) while a
    client outside held a keep-alive connection to a worker: refused naming
    that worker's connection and --tcp-close; with --tcp-close the held
    connection is gone and the restored nginx serves and reloads."""
    w, port, workers = test_unix.start_nginx(h)
    c = KeepAlive(port)
    try:
        worker = nginx_get(c, "before the dump")
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True)
        check_eq(nginx_get(c, "from the original after the dump"), worker, "the worker of the keep-alive connection")
        # The master first: a master that saw a worker die would start
        # another one, which would hold the port (and serve) after it.
        h.kill_and_reap(w)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        cryotest.wait_pids_gone(test_unix.image_pids(h, images))
        r = h.run_cryo(["restore", "-D", images, "--detach"])
        check(r.rc != 0, "the rewind restore of an outside peer's connection succeeded: %s" % r.describe())
        for word in ("pid %d fd" % worker, ":%d <-> 127.0.0.1:%d" % (port, c.port), "peer is outside the tree",
                     "--tcp-close"):
            check(word in r.message, "the refusal should say %r: %s" % (word, r.message))
        check(not cryotest.pid_alive(w.pid), "pid %d runs after the refused restore" % w.pid)
        check_no_lock("after the refused restore")
        r = h.restore(images, detach=True, expected_pid=w.pid, extra=["--tcp-close"])
        check(c.broken() is not None, "the connection the original held still answers after the rewind")
    finally:
        c.close()
    test_unix.after_restore(h, r.pid, port, workers, "after the rewind with --tcp-close")


# ---------------------------------------------------------------- tmux

class Tmux:
    """A tmux server on a private socket (-S), no configuration file, a
    shell in its one window."""

    def __init__(self, h):
        self.h = h
        self.exe = shutil.which("tmux")
        check(self.exe is not None, "tmux is not installed (scripts/install-deps.sh installs it)")
        self.dir = h.mkdir("tmux")
        self.sock = os.path.join(self.dir, "sock")
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.dir, "SHELL": "/bin/sh", "TERM": "xterm",
                    "LANG": "C.UTF-8"}
        self.clients = []

    def run(self, *args, check_rc=True):
        r = subprocess.run([self.exe, "-S", self.sock, "-f", "/dev/null"] + list(args), env=self.env, cwd=self.dir,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        self.h.reap_orphans()
        if check_rc:
            check_eq(r.returncode, 0, "tmux %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def start(self):
        # The server forks away from `tmux new-session -d`: the harness (a
        # subreaper) gets it.
        self.run("new-session", "-d", "-s", "cryo", "-x", "80", "-y", "24", "-c", self.dir, "/bin/sh")
        self.pid = int(self.run("display-message", "-p", "#{pid}").stdout.strip())
        self.h.tracked_pids.append(self.pid)
        ready = os.path.join(self.dir, "shell-ready")
        deadline = time.monotonic() + 15
        while not os.path.exists(ready):
            check(time.monotonic() < deadline, "the shell in the session did not run a command within 15 s")
            self.keys("touch %s" % ready)
            time.sleep(0.2)
        with open(os.path.join(self.dir, "loop.sh"), "w") as f:
            f.write("i=0; while :; do i=$((i+1)); echo $i > count; sleep 0.05; done\n")
        with open(os.path.join(self.dir, "answer.sh"), "w") as f:
            f.write("echo $((x+1)) > answer-$M; echo MARK-$M-$x\n")
        self.keys("x=41; . ./loop.sh &")
        wait_for(lambda: self.count() > 0, "the counter inside the session")

    def keys(self, line):
        self.run("send-keys", "-t", "cryo", line, "Enter")

    def count(self):
        try:
            return int(open(os.path.join(self.dir, "count")).read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def attach(self):
        """`tmux attach` on a pty of this test's; the master is drained so
        that the client never blocks on it. Returns (Popen, output list, pts path)."""
        master, slave = pty.openpty()
        path = os.ttyname(slave)
        p = subprocess.Popen([self.exe, "-S", self.sock, "attach", "-t", "cryo"], stdin=slave, stdout=slave,
                             stderr=slave, env=self.env, cwd=self.dir, start_new_session=True, close_fds=True)
        os.close(slave)
        self.h.tracked_pids.append(p.pid)
        self.h.popens[p.pid] = p
        out = []

        def drain():
            while True:
                try:
                    d = os.read(master, 65536)
                except OSError:
                    break
                if not d:
                    break
                out.append(d)
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        self.clients.append((p, master, t))
        wait_for(lambda: str(p.pid) in self.run("list-clients", "-F", "#{client_pid}").stdout.split(),
                 "tmux attach (pid %d) listed as a client" % p.pid)
        return p, out, path

    def close_client(self, p):
        for cp, master, t in self.clients:
            if cp is p:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=10)
                t.join(timeout=5)  # the slave's last holder gone: EIO ends it
                os.close(master)

    def check_session(self, when, mark):
        """The session goes on: the counter advances, the shell answers with
        the variable it had, capture-pane shows its output."""
        for _ in range(2):
            seen = self.count()
            wait_for(lambda: self.count() != seen, "%s: the counter going on" % when)
        answer = os.path.join(self.dir, "answer-" + mark)
        self.keys("M=%s; . ./answer.sh" % mark)
        wait_for(lambda: os.path.exists(answer) and open(answer).read() == "42\n", "%s: the shell's answer" % when)
        wait_for(lambda: ("MARK-%s-41" % mark) in self.run("capture-pane", "-p", "-t", "cryo").stdout,
                 "%s: capture-pane showing the shell's output" % when)

    def tree(self):
        return [self.pid] + self.h._descendants(self.pid)

    def kill(self):
        """SIGKILL the server and everything in its sessions, reaped: a
        shell loop forks on while its tree is being killed, and an escaped
        child (even a zombie the harness has not reaped) would hold its
        session's id, a pid of the image."""
        me = os.getpid()
        tree = self.tree()
        sids = {self.pid} | {cryotest.proc_stat(p)["session"] for p in tree if cryotest.proc_stat(p)}
        deadline = time.monotonic() + 15
        while True:
            left = []
            for name in os.listdir("/proc"):
                st = cryotest.proc_stat(int(name)) if name.isdigit() else None
                if st and (st["pid"] in tree or st["session"] in sids) and self.h._is_ours(st["pid"]):
                    left.append(st["pid"])
                    if st["state"] == "Z" and st["ppid"] == me:
                        try:
                            os.waitpid(st["pid"], os.WNOHANG)
                        except ChildProcessError:
                            pass
                    elif st["state"] != "Z":
                        try:
                            os.kill(st["pid"], signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            if not left:
                return
            check(time.monotonic() < deadline, "processes of the tmux server's sessions left: %r" % left)
            time.sleep(0.01)


def fd_links(pid):
    out = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            pass
    return out


def test_tmux_client_outside_refused(h):
    """A tmux server with a client attached from outside the tree: without
    --ext-unix-sk the dump is refused naming the client (pid and comm); with
    --ext-unix-sk alone, naming the client's terminal the server holds and
    --ext-tty. Nothing written, the tree untouched, the client still
    attached."""
    t = Tmux(h)
    t.start()
    client, _, pts = t.attach()
    comm = cryotest.proc_stat(client.pid)["comm"]
    h.dump_refused(t.pid, ["pid %d (%s) fd" % (client.pid, comm), "outside the tree", "--ext-unix-sk"])
    h.dump_refused(t.pid, ["pid %d fd" % t.pid, "terminal %s" % pts, "--ext-tty"], extra_args=["--ext-unix-sk"])
    check(str(client.pid) in t.run("list-clients", "-F", "#{client_pid}").stdout.split(),
          "the client is no longer attached after the refused dumps")
    t.check_session("after the refused dumps", "refused")
    t.close_client(client)


def test_tmux_client_outside_kill(h):
    """--ext-unix-sk --ext-tty, kill mode: the attached client sees its
    server go; the restored server finds that client's connection closed by
    its peer, drops the client (and its terminal) and keeps the session,
    which a new client attaches to."""
    t = Tmux(h)
    t.start()
    client, out, pts = t.attach()
    t.check_session("before the dump", "before")
    tree = t.tree()
    images = h.mkdir("img")
    h.dump(t.pid, images, extra=["--ext-unix-sk", "--ext-tty"])
    cryotest.wait_pids_gone(tree)
    try:
        rc = client.wait(timeout=15)
    except subprocess.TimeoutExpired:
        cryotest.fail("the attached client did not exit when its server was killed: %r" % b"".join(out)[-300:])
    h.note("the client exited with status %d: %r" % (rc, b"".join(out)[-80:]))
    img = h.show_json(images)
    for feature in ("unix-external-peers", "outside-tty"):
        check(feature in img["features"], "image features lack %s: %r" % (feature, img["features"]))
    h.restore(images, detach=True, expected_pid=t.pid)
    # The old client is dropped: no client listed, its terminal closed.
    wait_for(lambda: t.run("list-clients", "-F", "#{client_pid}").stdout.strip() == "",
             "the restored server dropping the client whose connection was closed")
    wait_for(lambda: pts not in fd_links(t.pid).values(), "the restored server closing the old client's terminal %s" % pts)
    check_eq(t.run("list-sessions", "-F", "#{session_name}").stdout.strip(), "cryo", "the sessions after the restore")
    t.check_session("after the restore", "after")
    t.close_client(client)
    new, _, _ = t.attach()
    t.check_session("with a new client attached", "new")
    t.close_client(new)


def test_tmux_client_outside_rewind(h):
    """--ext-unix-sk --ext-tty with --leave-running: the client stays
    attached to the original, which goes on; the original killed, the image
    restored twice: each time the server drops the client (its connection
    closed by its peer) and the session comes back from the image (the
    shell's variable of the dump)."""
    t = Tmux(h)
    t.start()
    client, out, pts = t.attach()
    images = h.mkdir("img")
    h.dump(t.pid, images, leave_running=True, extra=["--ext-unix-sk", "--ext-tty"])
    check(str(client.pid) in t.run("list-clients", "-F", "#{client_pid}").stdout.split(),
          "the client is no longer attached to the original after dump --leave-running")
    t.check_session("the original after dump --leave-running", "original")
    t.kill()
    try:
        client.wait(timeout=15)
    except subprocess.TimeoutExpired:
        cryotest.fail("the attached client did not exit when its server was killed: %r" % b"".join(out)[-300:])
    for i in range(2):
        h.restore(images, detach=True, expected_pid=t.pid)
        wait_for(lambda: t.run("list-clients", "-F", "#{client_pid}").stdout.strip() == "",
                 "rewind %d: the restored server dropping the client" % (i + 1))
        wait_for(lambda: pts not in fd_links(t.pid).values(), "rewind %d: the old client's terminal closed" % (i + 1))
        t.check_session("after rewind %d" % (i + 1), "rewind%d" % (i + 1))
        t.kill()
    t.close_client(client)


def test_tmux_client_terminal_replaced_refused(h):
    """--ext-tty: the client's terminal closed after the dump and its number
    given to a new pty: the restore is refused naming the terminal (the
    restored server must not write to another terminal), nothing is left."""
    t = Tmux(h)
    t.start()
    client, out, pts = t.attach()
    tree = t.tree()
    images = h.mkdir("img")
    h.dump(t.pid, images, extra=["--ext-unix-sk", "--ext-tty"])
    cryotest.wait_pids_gone(tree)
    t.close_client(client)  # the client's pty goes: /dev/pts/N is free
    # devpts hands out the lowest free number: open ptys until one is N.
    held = []
    try:
        for _ in range(64):
            m, s = pty.openpty()
            held += [m, s]
            if os.ttyname(s) == pts:
                break
        check(pts in [os.ttyname(fd) for fd in held[1::2]], "no new pty got the number of %s" % pts)
        r = h.run_cryo(["restore", "-D", images, "--detach"])
        check(r.rc != 0, "the restore onto a replaced terminal succeeded: %s" % r.describe())
        for word in (pts, "outside the tree", "another terminal now"):
            check(word in r.message, "the refusal should say %r: %s" % (word, r.message))
        check(not cryotest.pid_alive(t.pid), "pid %d runs after the refused restore" % t.pid)
    finally:
        for fd in held:
            os.close(fd)


ON_TERMINAL = r"""
import fcntl, os, termios, time
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
open("ready", "w").write("x")
while True:
    time.sleep(0.05)
"""


def test_ext_tty_controlling_terminal_refused(h):
    """--ext-tty takes only a terminal no process of the tree controls: a
    process whose controlling terminal is a pty this test owns is refused
    with it too, naming the terminal and --shell-job."""
    master, slave = pty.openpty()
    try:
        path = os.ttyname(slave)
        ctl = h.mkdir("on-terminal")
        p = subprocess.Popen([cryotest.PYTHON, "-c", ON_TERMINAL], stdin=slave, stdout=slave, stderr=slave, cwd=ctl,
                             start_new_session=True, close_fds=True)
        h.tracked_pids.append(p.pid)
        h.popens[p.pid] = p
        wait_for(lambda: os.path.exists(os.path.join(ctl, "ready")) or p.poll() is not None, "the process on %s" % path)
        check(p.poll() is None, "the process on %s exited with %s" % (path, p.returncode))
        r = h.dump_refused(p.pid, ["pid %d fd 0" % p.pid, "terminal %s" % path, "--shell-job"],
                           extra_args=["--ext-tty"])
        check("--ext-tty if" not in r.message, "the refusal suggests --ext-tty, which was given: %s" % r.message)
        h.cleanup_one(p.pid)
    finally:
        os.close(slave)
        os.close(master)


TESTS = [unlocking(t) for t in [
    test_java_httpserver_kill,
    test_java_httpserver_rewind,
    test_python_http_server_kill,
    test_python_http_server_rewind,
    test_nginx_keepalive_kill,
    test_nginx_keepalive_rewind,
    test_tmux_client_outside_refused,
    test_tmux_client_outside_kill,
    test_tmux_client_outside_rewind,
    test_tmux_client_terminal_replaced_refused,
    test_ext_tty_controlling_terminal_refused,
]]

if __name__ == "__main__":
    rc = cryotest.main(TESTS, description=__doc__)
    check_no_lock("after the suite")
    sys.exit(rc)
