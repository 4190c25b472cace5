#!/usr/bin/python3
"""End-to-end tests of event fds and POSIX timers: eventfd, timerfd, signalfd,
epoll, inotify and timer_create(2) timers come back with their state (see
tests/workloads/eventfds.c for what is checked), and fds of kinds cryo does
not support (io_uring) are refused by name without disturbing the process.

Run: test_events.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat  # noqa: E402

FEATURES = {"eventfd", "timerfd", "signalfd", "epoll", "inotify", "posix-timers"}
KINDS = {
    "anon_inode:[eventfd]": 2,
    "anon_inode:[timerfd]": 3,
    "anon_inode:[signalfd]": 1,
    "anon_inode:[eventpoll]": 1,
    "anon_inode:inotify": 1,
}


def fd_links(pid):
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink("%s/%s" % (base, name))
        except OSError:
            pass
    return out


def check_kinds(pid, before, when):
    """Every event fd is back at its number."""
    after = fd_links(pid)
    for fd, link in sorted(before.items()):
        if link in KINDS:
            check_eq(after.get(fd), link, "fd %d %s" % (fd, when))
    counts = {}
    for link in after.values():
        counts[link] = counts.get(link, 0) + 1
    for link, n in KINDS.items():
        check_eq(counts.get(link, 0), n, "number of %s fds %s" % (link, when))


def check_image(h, images):
    img = h.show_json(images)
    missing = FEATURES - set(img.get("features", []))
    check(not missing, "image features lack %s: %r" % (sorted(missing), img.get("features")))


def start(h):
    w = h.start_workload("eventfds")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    return w, fd_links(w.pid)


def test_events_kill(h):
    w, before = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check_image(h, images)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_kinds(r.pid, before, "after restore")
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (second check, exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_events_leave_running(h):
    w, before = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.kill_and_reap(w)
    check_image(h, images)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_kinds(r.pid, before, "after restore")
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_events_rewind(h):
    w, before = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(3):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        check_kinds(r.pid, before, "in rewind instance %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="of rewind instance %d" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def expect_refusal(h, w, names, what):
    """The dump of w fails naming pid and all of `names`; w runs on untouched."""
    images = h.mkdir("img")
    r = h.dump(w.pid, images, expect_ok=False)
    check(r.rc != 0, "dump of a process holding %s unexpectedly succeeded\n%s" % (what, r.describe()))
    check(r.rc != "TIMEOUT", "dump timed out")
    msg = r.message
    for n in [str(w.pid)] + names:
        check(n in msg, "dump error does not name %r (%s)\n%s" % (n, what, r.describe()))
    check(not os.path.exists(os.path.join(images, "inventory.img")),
          "a refused dump left an inventory in %s: %s" % (images, sorted(os.listdir(images))))
    st = proc_stat(w.pid)
    check(st is not None and st["state"] in ("S", "R"), "workload disturbed by the refused dump: %r" % (st,))
    status = cryotest.proc_status(w.pid)
    check_eq(status["TracerPid"], "0", "TracerPid after the refused dump")
    return r


def start_holder(h, kind):
    """iouring workload holding a `kind` fd; None if this kernel cannot make one."""
    w = h.start_workload("iouring", kind)
    deadline = time.monotonic() + 20
    while not os.path.exists(w.path("ready")):
        rc = w.popen.poll()
        if rc == 3:
            h.note("%s: %s" % (kind, w.stderr().strip()))
            return None
        check(rc is None, "iouring %s exited with %s before ready: %s" % (kind, rc, w.stderr().strip()))
        check(time.monotonic() < deadline, "iouring %s not ready within 20 s" % kind)
        time.sleep(0.01)
    h.wait_ready(w)
    return w


def test_iouring_refused(h):
    w = h.start_workload("iouring")
    h.wait_ready(w)
    ring = [fd for fd, link in fd_links(w.pid).items() if link == "anon_inode:[io_uring]"]
    check_eq(len(ring), 1, "io_uring fds of the workload")
    expect_refusal(h, w, ["io_uring", "fd %d" % ring[0]], "an io_uring")
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "iouring exit status")


def test_other_anon_kinds_refused(h):
    """fanotify, userfaultfd, perf_event and BPF map fds are refused by name
    (pidfds are restored: test_pidfd.py)."""
    for kind, name in [("fanotify", "fanotify"), ("userfaultfd", "userfaultfd"),
                       ("perf_event", "perf_event"), ("bpf-map", "BPF map")]:
        w = start_holder(h, kind)
        if w is None:
            continue
        expect_refusal(h, w, [name], "a " + kind)
        h.verify_ok(w, exit=True, when="after the refused dump of a %s holder" % kind)
        check_eq(h.wait_exit(w), ("exit", 0), "exit status of the %s holder" % kind)


def test_anon_inode_mappings_refused(h):
    """The ring of an io_uring instance or of a perf_event, still mapped after
    its fd was closed: the dump is refused naming the VMA and what it maps,
    before anything is written."""
    for kind, words in [("io_uring", ["anon_inode:[io_uring]", "the rings of an io_uring instance"]),
                        ("perf_event", ["anon_inode:[perf_event]", "the ring buffer of a perf_event"])]:
        w = start_holder(h, kind + "-mapped")
        if w is None:
            continue
        check_eq([l for l in fd_links(w.pid).values() if l.startswith("anon_inode:")], [],
                 "anonymous-inode fds of the %s holder (its fd closed)" % kind)
        expect_refusal(h, w, ["VMA "] + words, "a mapped " + kind + " ring")
        h.verify_ok(w, exit=True, when="after the refused dump of a mapped %s ring" % kind)
        check_eq(h.wait_exit(w), ("exit", 0), "exit status of the mapped %s holder" % kind)


def test_epoll_stale_target_refused(h):
    """An epoll registration whose fd number was closed cannot be restored:
    the dump names the pid, the epoll fd and the target fd."""
    w = h.start_workload("eventfds", "stale-epoll")
    h.wait_ready(w)
    links = fd_links(w.pid)
    ep = [fd for fd, link in links.items() if link == "anon_inode:[eventpoll]"]
    check_eq(len(ep), 1, "epoll fds of the workload")
    targets = []
    for line in (cryotest.read_text("/proc/%d/fdinfo/%d" % (w.pid, ep[0])) or "").splitlines():
        if line.startswith("tfd:"):
            targets.append(int(line.split()[1]))
    stale = [t for t in targets if t not in links]
    check_eq(len(stale), 1, "epoll targets that are not open (targets %r)" % targets)
    expect_refusal(h, w, ["epoll", "fd %d" % ep[0], "target fd %d" % stale[0]], "a stale epoll target")
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "eventfds exit status")


TESTS = [
    test_events_kill,
    test_events_leave_running,
    test_events_rewind,
    test_iouring_refused,
    test_other_anon_kinds_refused,
    test_anon_inode_mappings_refused,
    test_epoll_stale_target_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
