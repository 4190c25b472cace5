#!/usr/bin/python3
"""End-to-end tests of file descriptors in flight in UNIX socket queues
(SCM_RIGHTS, tests/workloads/scmrights.py): on a stream socket, "abc" with a
pipe that exists only in flight and holds data, "def" with a memfd only in
flight and an eventfd the process holds too; on a datagram socket, two
messages with fds (a pipe's write end, a regular file at an offset) and one
without. After a restore the workload receives them and checks the bytes,
which message each fd came with, and that the fds work; in kill,
leave-running and rewind modes. What cryo cannot send again is refused by
name: a UNIX socket held only by a queue, an fd kind it cannot make without a
process (an epoll instance).

Run: test_scm_rights.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_unix import expect_refused, kill_mode, leave_running_mode, rewind_mode  # noqa: E402

FEATURE = "unix-scm-rights"


def start(h):
    w = h.start_workload("scmrights.py")
    h.wait_ready(w)
    return w


def test_scm_rights_kill(h):
    kill_mode(h, start(h), FEATURE)


def test_scm_rights_leave_running(h):
    leave_running_mode(h, start(h))


def test_scm_rights_rewind(h):
    rewind_mode(h, start(h), 2)


def test_scm_rights_image(h):
    """The image lists each message's fds with their kinds."""
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    img = h.show_json(images)
    check(FEATURE in img["features"], "image features lack %r: %r" % (FEATURE, img["features"]))
    h.verify_ok(w, exit=True, when="of the original")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")


def start_sender(h, name, code):
    w = h.start(name, [cryotest.PYTHON, "-c",
                       "import os, select, socket, time\n"
                       "a, b = socket.socketpair()\n" + code +
                       "open('ready', 'w').write('x')\n"
                       "while True: time.sleep(0.05)\n"])
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("ready")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return w


def test_socket_only_in_flight_refused(h):
    """A UNIX socket whose only holder is a queue: refused by name."""
    w = start_sender(h, "scm-sock", "c, d = socket.socketpair()\n"
                                    "socket.send_fds(a, [b'x'], [c.fileno()])\n"
                                    "c.close()\n")
    expect_refused(h, w, ["pid %d" % w.pid, "SCM_RIGHTS", "message 0", "only in flight"])


def test_epoll_in_flight_refused(h):
    """An fd of a kind cryo cannot make without a process: refused by name."""
    w = start_sender(h, "scm-epoll", "e = select.epoll()\n"
                                     "socket.send_fds(a, [b'x'], [e.fileno()])\n")
    expect_refused(h, w, ["pid %d" % w.pid, "SCM_RIGHTS", "an epoll instance", "cannot send again"])


TESTS = [
    test_scm_rights_kill,
    test_scm_rights_leave_running,
    test_scm_rights_rewind,
    test_scm_rights_image,
    test_socket_only_in_flight_refused,
    test_epoll_in_flight_refused,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
