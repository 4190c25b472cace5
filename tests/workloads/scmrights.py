#!/usr/bin/python3
"""scmrights.py: file descriptors in flight in UNIX socket queues (SCM_RIGHTS).

Usage: /usr/bin/python3 scmrights.py CTL_DIR

The process sends, and does not receive until a verify "exit":
  - on a stream socketpair: "abc" with the read end of a pipe holding
    "pipe data 1" whose write end is closed (the pipe exists only in flight),
    then "def" with a memfd holding "memfd content" (closed here: only in
    flight) and an eventfd the process keeps too (counter 5: one open file
    in the queue and in the process), then "tail" without fds;
  - on a datagram socketpair: "one" with the write end of a second pipe whose
    read end the process keeps, "two" with a regular file opened read-only
    at offset 3 (closed here), and "three" without fds.

Same control protocol as the C workloads (wl_common.h). "check" checks the
queues are all there (FIONREAD) without reading them; "exit" receives every
message and checks its bytes, that the fds come with the right message, and
that they work: the pipe's bytes and end of file, the memfd's content, the
eventfd shared with the process, the second pipe reaching the process's read
end, the file's offset and content.
"""
import fcntl
import os
import socket
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop import poll_verify, write_atomic  # noqa: E402

FILE_TEXT = b"0123456789 regular file"


def queued(sock):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def receive_all(s_recv, d_recv, efd, r2, fails):
    def expect(got, want, what):
        if got != want:
            fails.append("%s: %r, expected %r" % (what, got, want))

    s_recv.setblocking(False)
    d_recv.setblocking(False)
    try:
        msg, fds, _, _ = socket.recv_fds(s_recv, 3, 8)
        expect((msg, len(fds)), (b"abc", 1), "stream message 1 (bytes, fds)")
        if fds:
            expect(os.read(fds[0], 100), b"pipe data 1", "pipe in flight")
            expect(os.read(fds[0], 100), b"", "pipe in flight at end of file")
        for fd in fds:
            os.close(fd)
        msg, fds, _, _ = socket.recv_fds(s_recv, 3, 8)
        expect((msg, len(fds)), (b"def", 2), "stream message 2 (bytes, fds)")
        if len(fds) == 2:
            expect(os.pread(fds[0], 100, 0), b"memfd content", "memfd in flight")
            expect(os.readlink("/proc/self/fd/%d" % fds[0]).startswith("/memfd:scm-test"), True, "memfd name")
            os.eventfd_write(fds[1], 1)  # the process's eventfd is the same file
            expect(os.eventfd_read(efd), 6, "eventfd shared with the queue")
        for fd in fds:
            os.close(fd)
        expect(s_recv.recv(100), b"tail", "stream tail")
        msg, fds, _, _ = socket.recv_fds(d_recv, 100, 8)
        expect((msg, len(fds)), (b"one", 1), "datagram 1 (bytes, fds)")
        if fds:
            os.write(fds[0], b"through the pipe")
            expect(os.read(r2, 100), b"through the pipe", "second pipe (write end in flight)")
        for fd in fds:
            os.close(fd)
        msg, fds, _, _ = socket.recv_fds(d_recv, 100, 8)
        expect((msg, len(fds)), (b"two", 1), "datagram 2 (bytes, fds)")
        if fds:
            expect(os.lseek(fds[0], 0, os.SEEK_CUR), 3, "offset of the file in flight")
            expect(os.read(fds[0], 100), FILE_TEXT[3:], "file in flight")
        for fd in fds:
            os.close(fd)
        msg, fds, _, _ = socket.recv_fds(d_recv, 100, 8)
        expect((msg, fds), (b"three", []), "datagram 3 (bytes, fds)")
        expect(queued(s_recv) + queued(d_recv), 0, "bytes left queued")
    except OSError as e:
        fails.append("receiving: %s" % e)


def main():
    ctl = sys.argv[1]
    s_recv, s_send = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    d_recv, d_send = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r1, w1 = os.pipe()
    os.write(w1, b"pipe data 1")
    os.close(w1)
    socket.send_fds(s_send, [b"abc"], [r1])
    os.close(r1)
    m = os.memfd_create("scm-test")
    os.write(m, b"memfd content")
    efd = os.eventfd(5)
    socket.send_fds(s_send, [b"def"], [m, efd])
    os.close(m)
    s_send.send(b"tail")
    r2, w2 = os.pipe()
    socket.send_fds(d_send, [b"one"], [w2])
    os.close(w2)
    path = os.path.join(ctl, "file")
    with open(path, "wb") as f:
        f.write(FILE_TEXT)
    fd = os.open(path, os.O_RDONLY)
    os.lseek(fd, 3, os.SEEK_SET)
    socket.send_fds(d_send, [b"two"], [fd])
    os.close(fd)
    d_send.send(b"three")
    write_atomic(ctl, "ready", "%d\n" % os.getpid())
    verifies = 0
    while True:
        req = poll_verify(ctl)
        if req is None:
            time.sleep(0.01)
            continue
        verifies += 1
        fails = []
        if req == "exit":
            receive_all(s_recv, d_recv, efd, r2, fails)
        elif queued(s_recv) != 10 or queued(d_recv) != 3:
            fails.append("queued: stream %d (expected 10), datagram %d (expected 3)" % (queued(s_recv), queued(d_recv)))
        line = ("FAIL " + "; ".join(fails)) if fails else "OK scmrights verifies=%d" % verifies
        write_atomic(ctl, "result", line + "\n")
        if req == "exit":
            return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
