#!/usr/bin/python3
"""End-to-end tests of `cryo migrate -t PID --to ADDR:PORT` into
`cryo page-server --restore`, over loopback with TLS (a pre-shared key): the
receiver writes the image, acknowledges it; only then the source kills its
tree and says so; only then the receiver restores it (on one machine it needs
the source's pids). Either side killed before the acknowledgement: the source
tree runs on, untouched, and verifies itself.

Run: test_migrate.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, read_text  # noqa: E402
from test_stream import (ACK, CLOSE, DATA, END, OPEN, Server, check_nothing_complete, check_untouched,  # noqa: E402
                         dump_to, fault_count, frame, hello, recv_frame)
from test_tls import Pki  # noqa: E402
from test_tree import start_tree, tree_ids  # noqa: E402


class Migrate:
    """`cryo migrate` in the background (the test reaps the killed original
    meanwhile: its pids must come free for the receiver's restore)."""

    def __init__(self, h, pid, addr, auth, env=None):
        h.counter += 1
        self.err_path = os.path.join(h.tmp_root, "%03d-migrate.err" % h.counter)
        argv = [h.cryo, "migrate", "-t", str(pid), "--to", addr] + list(auth)
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      close_fds=True, env=dict(os.environ, **env) if env else None)
        h.popens[self.p.pid] = self.p
        h.tracked_pids.append(self.p.pid)

    def wait(self, timeout=90):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(timeout=10)
            fail("cryo migrate did not finish within %ds: %s" % (timeout, self.stderr()))

    def stderr(self):
        return read_text(self.err_path, "")


def reap_while(m, pids, timeout=90):
    """Reaps the killed tree's orphans (they come to the harness, a
    subreaper) while migrate runs: the receiver restores them under the same
    pids once they are free, so waiting for the pids to be gone could see the
    restored ones instead."""
    deadline = time.monotonic() + timeout
    while m.p.poll() is None and time.monotonic() < deadline:
        for pid in pids:
            st = cryotest.proc_stat(pid)
            if st is not None and st["state"] == "Z" and st["ppid"] == os.getpid():
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.01)


def migrate_and_verify(h, w, k, when):
    """Migrates `w` and checks the tree restored by the receiver: same pids,
    same tree, its own verification."""
    before = tree_ids(w.pid)
    h.tracked_pids.extend(before)
    images = os.path.join(h.mkdir("recv"), "img")
    pidfile = os.path.join(h.tmp_root, "migrated-%d.pid" % w.pid)
    srv = Server(h, images, auth=k.psk("psk1"), extra=["--restore", "--pidfile", pidfile])
    m = Migrate(h, w.pid, srv.addr, k.psk("psk1"))
    h.reap_original(w, timeout=60)
    reap_while(m, before)
    rc = m.wait()
    check_eq(rc, 0, "cryo migrate exit status (%s)" % m.stderr())
    check_eq(srv.wait(), 0, "page-server --restore exit status (%s)" % srv.stderr())
    check("restored on the page server as pid %d" % w.pid in m.stderr(), "migrate's success line: %s" % m.stderr())
    check_eq(read_text(pidfile, "").strip(), str(w.pid), "pidfile of page-server --restore")
    cryotest.check_private_image(images)
    rw = w.restored(w.pid)
    after = tree_ids(w.pid)
    strip = lambda ids: {pid: v if pid != w.pid else v[1:] for pid, v in ids.items()}  # noqa: E731
    check_eq(strip(after), strip(before), "pid -> (ppid, pgid, sid, zombie) of the tree " + when)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "migrated tree exit status")


def test_migrate_tree(h):
    """A tree with pipes (bytes in flight) and shared memory migrates."""
    k = Pki(h.mkdir("pki"))
    w = start_tree(h)
    h.verify_ok(w, when="before migrate")
    migrate_and_verify(h, w, k, "after migrate")


def test_migrate_memory(h):
    """64 MiB of copy-on-write memory shared by three processes migrates."""
    k = Pki(h.mkdir("pki"))
    w = h.start_workload("cow", "64")
    h.wait_ready(w, timeout=30)
    migrate_and_verify(h, w, k, "after migrate")


def test_wrong_partner(h):
    """migrate into a page server without --restore, and dump --to into one
    with --restore: refused, the tree untouched, nothing kept."""
    k = Pki(h.mkdir("pki"))
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    images = os.path.join(h.mkdir("plain"), "img")
    srv = Server(h, images, auth=k.psk("psk1"))
    m = Migrate(h, w.pid, srv.addr, k.psk("psk1"))
    check_eq(m.wait(), 1, "migrate to a page server without --restore (%s)" % m.stderr())
    check_eq(srv.wait(), 1, "page-server without --restore")
    check("--restore" in m.stderr(), "migrate should name --restore: %s" % m.stderr())
    check_untouched(h, w, before, "after a migrate to a page server without --restore")
    check_nothing_complete(h, images, "migrate to a page server without --restore")
    images = os.path.join(h.mkdir("restoring"), "img")
    srv = Server(h, images, auth=k.psk("psk1"), extra=["--restore"])
    r = dump_to(h, w.pid, srv.addr, auth=k.psk("psk1"))
    check_eq(r.rc, 1, "dump --to into page-server --restore\n%s" % r.describe())
    check_eq(srv.wait(), 1, "page-server --restore after a dump --to")
    check("cryo migrate" in srv.stderr(), "the page server should say to use cryo migrate: %s" % srv.stderr())
    check_untouched(h, w, before, "after a dump --to into a page server --restore")
    check_nothing_complete(h, images, "dump --to into a page server --restore")


def test_sides_killed(h):
    """kill -9 of the receiver (after its first file, midway) or of the
    sender (at points spread over the stream) before the acknowledgement: the
    source tree keeps running untouched and verifies itself."""
    k = Pki(h.mkdir("pki"))
    w = h.start_workload("cow", "16")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    # Fault points of each side over a whole stream (a --leave-running dump).
    images = os.path.join(h.mkdir("count"), "img")
    srv = Server(h, images, auth=k.psk("psk1"), env={"CRYO_FAULT_POINT": "0"})
    # --no-cow: the pages copied during the freeze, as a migration (kill
    # mode) copies them, so the points counted are the migration's.
    r = dump_to(h, w.pid, srv.addr, leave_running=True, auth=k.psk("psk1"), env={"CRYO_FAULT_POINT": "0"},
                extra=["--no-cow"])
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    check_eq(srv.wait(), 0, "counting page-server")
    n_recv, n_send = fault_count(srv.stderr()), fault_count(r.stderr)
    for point in (1, n_recv // 2):
        images = os.path.join(h.mkdir("recv-kill%d" % point), "img")
        srv = Server(h, images, auth=k.psk("psk1"), extra=["--restore"],
                     env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": "KILL"})
        m = Migrate(h, w.pid, srv.addr, k.psk("psk1"))
        check_eq(srv.wait(), -signal.SIGKILL, "page-server killed at fault point %d" % point)
        check_eq(m.wait(), 1, "migrate with its receiver killed at point %d (%s)" % (point, m.stderr()))
        check("untouched" in m.stderr(), "migrate should say the tree is untouched: %s" % m.stderr())
        check_untouched(h, w, before, "after its receiver was killed at point %d" % point)
        check_nothing_complete(h, images, "receiver killed at point %d" % point)
    for frac in (0.3, 0.7):
        point = max(1, int(n_send * frac))
        images = os.path.join(h.mkdir("send-kill%d" % point), "img")
        srv = Server(h, images, auth=k.psk("psk1"), extra=["--restore"])
        m = Migrate(h, w.pid, srv.addr, k.psk("psk1"), env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": "KILL"})
        check_eq(m.wait(), -signal.SIGKILL, "migrate killed at fault point %d of %d" % (point, n_send))
        check_eq(srv.wait(), 1, "page-server after its sender died (%s)" % srv.stderr())
        check("nothing was kept" in srv.stderr(), "page-server should keep nothing: %s" % srv.stderr())
        check_untouched(h, w, before, "after cryo migrate was killed at point %d of %d" % (point, n_send))
        check_nothing_complete(h, images, "sender killed at point %d" % point)
    h.verify_ok(w, exit=True, when="of the source at the end")


def test_receiver_killed_after_ack(h):
    """The receiver killed after the acknowledgement, before its restore: the
    source tree is gone (it was killed once the image was safe), migrate says
    so and where the image is; the image restores by hand."""
    k = Pki(h.mkdir("pki"))
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    h.tracked_pids.extend(before)
    images = os.path.join(h.mkdir("count"), "img")
    srv = Server(h, images, auth=k.psk("psk1"), env={"CRYO_FAULT_POINT": "0"})
    r = dump_to(h, w.pid, srv.addr, leave_running=True, auth=k.psk("psk1"))
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    check_eq(srv.wait(), 0, "counting page-server")
    n = fault_count(srv.stderr())  # the last one of a --restore receiver comes after KILLED
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images, auth=k.psk("psk1"), extra=["--restore"],
                 env={"CRYO_FAULT_POINT": str(n + 1), "CRYO_FAULT_SIGNAL": "KILL"})
    m = Migrate(h, w.pid, srv.addr, k.psk("psk1"))
    h.reap_original(w, timeout=60)
    reap_while(m, before)
    check_eq(srv.wait(), -signal.SIGKILL, "page-server killed before its restore")
    check_eq(m.wait(), 1, "migrate whose receiver died before restoring (%s)" % m.stderr())
    check(re.search(r"cryo restore -D \S*img", m.stderr()), "migrate should say where the image is: %s" % m.stderr())
    cryotest.wait_pids_gone(list(before))
    rr = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(rr.pid)
    h.verify_ok(rw, exit=True, when="after a restore by hand of the migrated image")


MIGRATE = 9


def test_unconfirmed_not_restored(h):
    """A sender that says MIGRATE, sends a whole image, gets the ACK and then
    goes away without KILLED (as a cryo migrate killed between the ACK and
    its kill): the receiver keeps the image but never restores it (the tree
    it came from may still run), and says why."""
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    local = h.mkdir("local")
    h.dump(w.pid, local, leave_running=True)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images, extra=["--restore", "--timeout", "5"])
    host, port = srv.addr.rsplit(":", 1)
    names = sorted(n for n in os.listdir(local) if n != "inventory.img") + ["inventory.img"]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(hello())
        check(recv_frame(s) is not None, "no HELLO from page-server --restore")
        s.sendall(frame(MIGRATE))
        for i, name in enumerate(names, 1):
            with open(os.path.join(local, name), "rb") as f:
                data = f.read()
            s.sendall(frame(OPEN, i, name.encode()))
            for off in range(0, len(data), 1 << 20):
                s.sendall(frame(DATA, i, struct.pack("<Q", off) + data[off:off + (1 << 20)]))
            s.sendall(frame(CLOSE, i, struct.pack("<Q", len(data))))
        s.sendall(frame(END))
        ack = recv_frame(s, timeout=60)
        check(ack is not None and ack[0] == ACK, "no ACK for a whole image: %r (%s)" % (ack, srv.stderr()))
    check_eq(srv.wait(timeout=180), 1, "page-server --restore whose sender never said KILLED (%s)" % srv.stderr())
    check("did not confirm" in srv.stderr() and "not restored" in srv.stderr(),
          "the page server should say the source did not confirm: %s" % srv.stderr())
    check("waiting for pid" not in srv.stderr(), "the page server tried to restore: %s" % srv.stderr())
    check_eq(h.run_cryo(["show", images], log=False).rc, 0, "cryo show of the kept image")
    check_untouched(h, w, before, "after an unconfirmed migration")


TESTS = [
    test_migrate_tree,
    test_migrate_memory,
    test_wrong_partner,
    test_sides_killed,
    test_receiver_killed_after_ack,
    test_unconfirmed_not_restored,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
