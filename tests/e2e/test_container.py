#!/usr/bin/python3
"""End-to-end test of a container-like tree: one started with
`unshare --pid --mount --net --ipc --uts --fork --mount-proc`, holding at
once what the namespace suites test one by one:

  pid 1  /bin/sh (the namespace's init, outside the dumped tree)
  pid 2  /bin/sh, a session leader, the dumped tree's root, waiting on
         mntns.py  tmpfs mounts with files, a bind, a read-only remount
         netns.py  lo addresses, a route, sysctls, an nft table, listeners,
                   a veth pair whose outside end is in a namespace of the test
         ipcns     SysV semaphores, message queues, a segment, POSIX mqueues
                   with queued messages, host and domain name

It is checkpointed in kill mode, restored twice with `--pidns new` (each
copy in fresh namespaces of every kind), and each time every workload
verifies itself from inside while the test checks from outside: a client in
the veth's outside namespace reaches the listener again, nothing of the
tree's mounts or IPC objects shows in the host's namespaces.

Run: test_container.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, read_text  # noqa: E402
from test_mntns import check_outside as mounts_outside, make_base  # noqa: E402
from test_netns import PeerNamespaces, outside_reaches, peer_link, wait_peer_gone  # noqa: E402
from test_ipcns import check_outside as ipc_outside  # noqa: E402
from test_pidns import PIDNS, ns_pids  # noqa: E402

PYTHON = "/usr/bin/python3"
KINDS = ("pid", "mnt", "net", "ipc", "uts")


def ns_of(pid, kind):
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def children(pid):
    return [int(c) for c in read_text("/proc/%d/task/%d/children" % (pid, pid), "").split()]


def wait_ready(ctl, holder, name):
    deadline = time.monotonic() + 30
    while not (read_text(os.path.join(ctl, "ready")) or "").strip():
        if time.monotonic() > deadline or not pid_alive(holder.pid):
            fail("%s did not get ready: %s" % (name, holder.stderr()))
        time.sleep(0.02)
    return int(read_text(os.path.join(ctl, "ready")).strip())


def by_inner_pid(root):
    """The tree's processes below `root` (a host pid): {pid in the namespace: host pid}."""
    return {ns_pids(c)[-1]: c for c in children(root)}


def start(h, ns, peer):
    """The container: (unshare's Workload, the tree root's host pid, the
    three Workloads keyed by name, the mntns base directory)."""
    base = make_base(h)
    ctls = {n: h.mkdir("container-" + n) for n in ("mntns", "netns", "ipcns")}
    jobs = " ".join("%s &" % cmd for cmd in (
        "%s %s %s %s" % (PYTHON, h.workload_path("mntns.py"), ctls["mntns"], base),
        "%s %s %s --veth %s %s" % (PYTHON, h.workload_path("netns.py"), ctls["netns"], ns, peer),
        "%s %s external" % (h.workload_path("ipcns"), ctls["ipcns"])))
    inner = "%s wait" % jobs
    u = h.start("container", ["/usr/bin/unshare", "--pid", "--mount", "--net", "--ipc", "--uts", "--fork",
                              "--mount-proc", "--", "/bin/sh", "-c", "setsid /bin/sh -c '%s' & wait" % inner],
                ctls["mntns"])
    inner_pids = {n: wait_ready(ctl, u, n) for n, ctl in ctls.items()}
    init = children(u.pid)[0]
    root = children(init)[0]
    h.tracked_pids += [init, root]
    check_eq(ns_pids(root)[-1], 2, "the tree root's pid in its namespace")
    hosts = by_inner_pid(root)
    ws = {}
    for n, ctl in ctls.items():
        check(inner_pids[n] in hosts, "%s (pid %d inside) is not a child of the tree's root: %r"
              % (n, inner_pids[n], hosts))
        h.tracked_pids.append(hosts[inner_pids[n]])
        ws[n] = cryotest.Workload(n, ctl, hosts[inner_pids[n]], None, u.argv)
    return u, root, ws, base, inner_pids


def check_copy(h, root, ws, base, inner_pids, ns, peer, when):
    """Every workload of the copy under `root` verifies itself; from
    outside: fresh namespaces, nothing leaked, the veth reachable."""
    hosts = by_inner_pid(root)
    restored = {}
    for n, w in ws.items():
        check(inner_pids[n] in hosts, "%s: %s (pid %d inside) is missing: %r" % (when, n, inner_pids[n], hosts))
        restored[n] = w.restored(hosts[inner_pids[n]])
        h.tracked_pids.append(restored[n].pid)
    for kind in KINDS:
        check(ns_of(root, kind) != ns_of(os.getpid(), kind), "%s: the tree is in the host's %s namespace"
              % (when, kind))
        for rw in restored.values():
            check_eq(ns_of(rw.pid, kind), ns_of(root, kind), "%s: %s shares the tree's %s namespace"
                     % (when, rw.name, kind))
    for rw in restored.values():
        h.verify_ok(rw, when=when)
    mounts_outside(root, base, when)
    ipc_outside(root, when)
    outside_reaches(ns, peer, inner_pids["netns"], when)
    return restored


def test_container_kill_restore_twice(h):
    peer = "cct%d" % (os.getpid() % 100000)
    with PeerNamespaces("c") as (ns,):
        u, root, ws, base, inner_pids = start(h, ns, peer)
        for w in ws.values():
            h.verify_ok(w, when="of the original")
        outside_reaches(ns, peer, inner_pids["netns"], "original")
        images = h.mkdir("img")
        h.dump(root, images)
        h.wait_exit(u.pid)  # pid 1 ends with the tree, and with it unshare
        h.reap_orphans()
        wait_peer_gone(ns, peer, "after the kill-mode dump")
        show = str(h.show_json(images))
        for feature in ("pid-ns", "mount-ns", "net-veth"):
            check(feature in show, "the image lists the feature " + feature)
        for i in (1, 2):
            when = "after restore %d" % i
            r = h.restore(images, detach=True, extra=PIDNS)
            check_eq(ns_pids(r.pid)[-1], 2, when + ": the root's pid in its namespace")
            check(peer_link(ns, peer) is not None, "%s: the veth's outside end is back in %s" % (when, ns))
            restored = check_copy(h, r.pid, ws, base, inner_pids, ns, peer, when)
            init = cryotest.proc_stat(r.pid)["ppid"]
            for rw in restored.values():
                h.verify_ok(rw, exit=True, when=when + " (exit)")
            check_eq(h.wait_exit(init, timeout=20), ("exit", 0), when + ": the init's status once the tree exited 0")
            h.reap_orphans()
            wait_peer_gone(ns, peer, when + ", once the copy exited")


def test_container_rewind(h):
    """Leave-running dump; the original runs on (its workloads verify
    themselves), then dies; the image restores the container as it was at
    the dump."""
    peer = "ccr%d" % (os.getpid() % 100000)
    with PeerNamespaces("r") as (ns,):
        u, root, ws, base, inner_pids = start(h, ns, peer)
        outside_reaches(ns, peer, inner_pids["netns"], "original")
        images = h.mkdir("img")
        h.dump(root, images, leave_running=True)
        for w in ws.values():
            h.verify_ok(w, when="of the original after the leave-running dump")
        init = cryotest.proc_stat(root)["ppid"]
        os.kill(init, 9)  # pid 1: the kernel kills every process of its namespace
        h.wait_exit(u.pid)
        h.reap_orphans()
        wait_peer_gone(ns, peer, "once the original died")
        r = h.restore(images, detach=True, extra=PIDNS)
        restored = check_copy(h, r.pid, ws, base, inner_pids, ns, peer, "after the rewind")
        init = cryotest.proc_stat(r.pid)["ppid"]
        for rw in restored.values():
            h.verify_ok(rw, exit=True, when="after the rewind (exit)")
        check_eq(h.wait_exit(init, timeout=20), ("exit", 0), "the init's status once the tree exited 0")
        h.reap_orphans()
        wait_peer_gone(ns, peer, "once the copy exited")


TESTS = [
    test_container_kill_restore_twice,
    test_container_rewind,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS))
