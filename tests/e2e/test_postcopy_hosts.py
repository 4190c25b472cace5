#!/usr/bin/python3
"""Post-copy migration between two hosts on one machine: a TCP server with a
connected client migrates with `cryo migrate --lazy` from "host A" to "host
B" (the network of test_twohosts.py: namespaces R, A, B, C, the floating
address 10.77.0.10 moved by `--before-resume`); the server's memory comes
from A on first touch and by the prefetch while it already serves its client
from B. The client (host C) counts every byte of both streams: none lost,
repeated or reordered, no reset.

  - test_postcopy_tcp_two_machines: the two-machine path, plain
    `page-server --restore`: the page server runs in a PID namespace of its
    own (`unshare --pid --fork --mount-proc` in B's network namespace, as on
    another machine), where the original's pids are free, and restores the
    server under them there. Both ends stream on afterwards, the original in
    A is gone (killed once every page was in B), the restored server lives
    in B's network namespace, no lock table is left in A or B;
  - test_postcopy_tcp_pidns_new_refused: the one-machine way (`--pidns new`,
    beside the frozen original) refuses such a tree by name before it runs
    in B (its connections' lock needs the restore janitor, which would die
    with the new PID namespace): the original resumes in A untouched.

Run: test_postcopy_hosts.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, read_text  # noqa: E402
from test_tls import Pki  # noqa: E402
from test_tree import tree_ids  # noqa: E402
from test_twohosts import Cryo, Hosts, check_flows, nsenter, page_server, pauses, start_pair  # noqa: E402


class UnsharedPageServer:
    """`cryo page-server --restore` in host B inside a PID namespace of its
    own: unshare's child (the namespace's pid 1) is a shell that runs the page
    server, writes its exit status into a file, then sleeps, so that the tree
    restored there outlives the page server (the namespace ends with its
    pid 1)."""

    def __init__(self, h, hosts, args):
        h.counter += 1
        base = os.path.join(h.tmp_root, "%03d-page-server-unshared" % h.counter)
        self.err_path = base + ".err"
        self.rc_path = base + ".rc"
        script = '"$@"; echo $? > %s; exec /bin/sleep 1000' % self.rc_path
        argv = nsenter(hosts, "B", ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--", "/bin/sh", "-c",
                                    script, "sh", h.cryo] + list(args) + ["--log-file", base + ".log", "-v"])
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      close_fds=True)
        h.popens[self.p.pid] = self.p
        h.tracked_pids.append(self.p.pid)
        self.h = h

    def stderr(self):
        return read_text(self.err_path, "")

    def wait(self, timeout=90):
        deadline = time.monotonic() + timeout
        while not (read_text(self.rc_path, "") or "").strip():
            if self.p.poll() is not None or time.monotonic() > deadline:
                fail("the page server under unshare did not finish: %s" % self.stderr())
            time.sleep(0.02)
        return int(read_text(self.rc_path).strip())

    def init_pid(self):
        """The namespace's pid 1 (unshare's child), a host pid."""
        kids = read_text("/proc/%d/task/%d/children" % (self.p.pid, self.p.pid), "").split()
        check(len(kids) == 1, "unshare should have one child: %r" % kids)
        return int(kids[0])

    def host_pid(self, ns_pid):
        """The host pid of the namespace's `ns_pid`."""
        ns = os.readlink("/proc/%d/ns/pid" % self.init_pid())
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/ns/pid" % name) != ns:
                    continue
            except OSError:
                continue
            for line in (read_text("/proc/%s/status" % name, "") or "").splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == str(ns_pid):
                    return int(name)
        fail("no process %d in the page server's PID namespace" % ns_pid)

    def end(self):
        """Kills the namespace (its pid 1: every process in it dies) and unshare."""
        self.h.cleanup_one(self.init_pid())
        self.p.wait(timeout=20)


def lazy_report(text):
    m = re.search(r"lazy restore: .*", text)
    return m.group(0) if m else None


def test_postcopy_tcp_two_machines(h):
    """Plain `page-server --restore` in a PID namespace of its own in B: the
    two-machine path, the server restored under its original pids there,
    its memory coming from A while it streams from B."""
    k = Pki(h.mkdir("pki"))
    with Hosts() as hosts:
        server, client, ends = start_pair(h, hosts)
        h.tracked_pids.extend(tree_ids(server.pid))
        images = os.path.join(h.mkdir("recv"), "img")
        pidfile = os.path.join(h.tmp_root, "postcopy-hosts-%d.pid" % server.pid)
        srv = UnsharedPageServer(h, hosts, ["page-server", "--listen", "10.77.2.2:0", "-D", images, "--restore",
                                            "--pidfile", pidfile, "--before-resume", hosts.move_vip_command()] +
                                 k.psk("psk1"))
        try:
            deadline = time.monotonic() + 20
            while not re.search(r"listening on (\S+)", srv.stderr()):
                check(time.monotonic() < deadline and srv.p.poll() is None,
                      "page-server did not start listening: %s" % srv.stderr())
                time.sleep(0.02)
            addr = re.search(r"listening on (\S+)", srv.stderr()).group(1)
            t0 = time.monotonic()
            m = Cryo(h, hosts, "A", ["migrate", "-t", str(server.pid), "--to", addr, "--lazy"] + k.psk("psk1"),
                     "migrate")
            check_eq(m.wait(), 0, "cryo migrate --lazy exit status (%s)" % m.stderr())
            check_eq(srv.wait(), 0, "page-server --restore exit status (%s)" % srv.stderr())
            took = time.monotonic() - t0
            report = lazy_report(srv.stderr())
            check(report is not None, "the page server did not report the lazy pages: %s" % srv.stderr())
            check("post-copy" in m.stderr(), "migrate's success line: %s" % m.stderr())
            # The original, frozen until every page was in B, is killed there.
            check_eq(h.reap_original(server, timeout=30), signal.SIGKILL, "the original's end in host A")
            check_eq(int(read_text(pidfile, "0").strip()), server.pid,
                     "the restored root's pid in the page server's PID namespace")
            pid = srv.host_pid(server.pid)
            check_eq(os.stat("/proc/%d/ns/net" % pid).st_ino, hosts.netns_of("B"),
                     "the restored server's network namespace (host B's)")
            check(not hosts.has_vip("A") and hosts.has_vip("B"), "the address did not move from A to B")
            moved = server.restored(pid)
            check_flows([(moved, "server"), (client, "client")], "after the post-copy migration to host B")
            check_eq(hosts.lock_tables("A"), [], "lock tables left in host A")
            check_eq(hosts.lock_tables("B"), [], "lock tables left in host B")
            sp, cp = pauses(moved, "server"), pauses(client, "client")
            h.note("post-copy A -> B in %.0f ms (cryo migrate --lazy, wall); %s; longest pause of the server's "
                   "sender %.0f ms, of its receiver %.0f ms; the client's receiver %.0f ms"
                   % (took * 1e3, report, sp["send"], sp["recv"], cp["recv"]))
            h.cleanup_one(client.pid)
        finally:
            if srv.p.poll() is None and read_text("/proc/%d/task/%d/children" % (srv.p.pid, srv.p.pid), "").strip():
                srv.end()  # the namespace and the restored server in it


def test_postcopy_tcp_pidns_new_refused(h):
    """--pidns new (the one-machine way) refuses a tree with TCP connections
    (their lock needs the restore janitor, which would die with the new PID
    namespace) by name, before the tree runs in B: the original resumes in A
    untouched, both streams go on, the address stays, no lock is left."""
    k = Pki(h.mkdir("pki"))
    with Hosts() as hosts:
        server, client, ends = start_pair(h, hosts)
        before = tree_ids(server.pid)
        images = os.path.join(h.mkdir("recv"), "img")
        srv, addr = page_server(h, hosts, images, k, ["--pidns", "new", "--before-resume", hosts.move_vip_command()])
        m = Cryo(h, hosts, "A", ["migrate", "-t", str(server.pid), "--to", addr, "--lazy"] + k.psk("psk1"), "migrate")
        check_eq(m.wait(), 1, "cryo migrate --lazy into --pidns new (%s)" % m.stderr())
        check_eq(srv.wait(), 1, "page-server --pidns new (%s)" % srv.stderr())
        check("janitor" in srv.stderr() and "the lock of its TCP connections" in srv.stderr() and
              "without --pidns new" in srv.stderr(),
              "the page server should say why and what to do: %s" % srv.stderr())
        check("left running, untouched" in m.stderr(), "migrate should say the tree is untouched: %s" % m.stderr())
        check_eq(tree_ids(server.pid), before, "the server's tree after the refused migration")
        check(hosts.has_vip("A") and not hosts.has_vip("B"), "the address moved")
        check_flows(ends, "after the refused post-copy migration")
        check_eq(hosts.lock_tables("A"), [], "lock tables left in host A")
        check_eq(hosts.lock_tables("B"), [], "lock tables left in host B")
        h.cleanup_one(client.pid)
        h.cleanup_one(server.pid)


TESTS = [
    test_postcopy_tcp_two_machines,
    test_postcopy_tcp_pidns_new_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
