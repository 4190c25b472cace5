#!/usr/bin/python3
"""End-to-end tests of streamed images: `cryo page-server --listen ADDR:PORT
-D DIR` receives what `cryo dump -t PID --to ADDR:PORT` sends, over loopback.
The received directory restores like any image; a stream broken at any point
(either side killed, a receiver that refuses or never acknowledges) leaves the
source tree running untouched and no directory that looks complete; a hostile
stream is refused without a crash or a hang.

Run: test_stream.py --cryo PATH --workloads DIR [NAME ...]
"""
import glob
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, read_text  # noqa: E402
from test_tree import restore_and_verify, start_tree, tree_ids  # noqa: E402

# Frame types (docs/stream-protocol.md).
HELLO, OPEN, DATA, CLOSE, END, ABORT, ACK, ERROR = range(1, 9)
DATA_ZSTD = 12
MAGIC = b"CRYOSTRM"


def frame(ftype, file_id=0, payload=b""):
    return struct.pack("<IIII", ftype, file_id, len(payload), 0) + payload


def hello(fmt=2):
    return frame(HELLO, 0, MAGIC + struct.pack("<II", 1, fmt) + b"test")


def zstd_raw(data):
    """A zstd frame holding `data` as one raw block (RFC 8878): magic, a
    single-segment header with a 1-byte content size, a last raw block."""
    assert len(data) < 256
    return struct.pack("<IBB", 0xFD2FB528, 0x20, len(data)) + struct.pack("<I", 1 | (len(data) << 3))[:3] + data


def recv_frame(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 16:
        got = sock.recv(16 - len(buf))
        if not got:
            return None
        buf += got
    ftype, fid, length, _ = struct.unpack("<IIII", buf)
    payload = b""
    while len(payload) < length:
        got = sock.recv(length - len(payload))
        if not got:
            return None
        payload += got
    return ftype, fid, payload


class Server:
    """A `cryo page-server` started in the background on a free port."""

    def __init__(self, h, images, extra=(), env=None, auth=("--insecure",)):
        h.counter += 1
        self.err_path = os.path.join(h.tmp_root, "%03d-page-server.err" % h.counter)
        self.images = images
        argv = [h.cryo, "page-server", "--listen", "127.0.0.1:0", "-D", images] + list(auth) + list(extra)
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      close_fds=True, env=dict(os.environ, **env) if env else None)
        # Tracked: never reaped behind Popen's back, killed by the cleanup.
        h.popens[self.p.pid] = self.p
        h.tracked_pids.append(self.p.pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(r"listening on (\S+)", read_text(self.err_path, ""))
            if m:
                self.addr = m.group(1)
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        fail("page-server did not start listening: %s" % read_text(self.err_path, ""))

    def wait(self, timeout=60):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            fail("page-server did not finish within %ds: %s" % (timeout, self.stderr()))
        return rc

    def stderr(self):
        return read_text(self.err_path, "")

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(timeout=10)


def leftovers(images):
    """Temporary directories a receiver left beside `images`."""
    parent, base = os.path.split(images.rstrip("/"))
    return glob.glob(os.path.join(parent, "." + base + ".cryo-receiving.*"))


def check_nothing_complete(h, images, when):
    """No partial image that looks complete: DIR absent, and a temporary
    directory left (by a receiver killed -9) is refused as incomplete, unless
    the receiver was killed between the image's validation and its rename:
    then it is a whole, valid image (under the temporary name)."""
    check(not os.path.exists(images), "%s: %s exists" % (when, images))
    for tmp in leftovers(images):
        r = h.run_cryo(["show", tmp], log=False)
        if os.path.exists(os.path.join(tmp, "dump-incomplete")):
            check(r.rc != 0 and "incomplete" in r.message, "%s: cryo show %s should refuse it as incomplete: %s"
                  % (when, tmp, r.message))
        else:
            check(r.rc == 0, "%s: %s has no incomplete marker but is not a valid image: %s" % (when, tmp, r.message))
        shutil.rmtree(tmp)


def dump_to(h, pid, addr, leave_running=False, env=None, extra=(), auth=("--insecure",)):
    args = ["dump", "-t", str(pid), "--to", addr] + list(auth) + list(extra)
    if leave_running:
        args.append("--leave-running")
    return h.run_cryo(args, env=env)


def test_tree_streamed_kill(h):
    """A tree with pipes (bytes in flight) and shared memory, streamed in kill
    mode, restores from the received directory and verifies itself."""
    w = start_tree(h)
    h.verify_ok(w, when="before dump")
    before = tree_ids(w.pid)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images)
    cwd_before = set(os.listdir("."))
    r = dump_to(h, w.pid, srv.addr)
    check(r.rc == 0, "dump --to failed\n%s" % r.describe())
    check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
    check("received an image" in srv.stderr(), "page-server success line: %s" % srv.stderr())
    check_eq(set(os.listdir(".")), cwd_before, "files in the source's working directory (nothing written there)")
    cryotest.check_private_image(images)
    check(not leftovers(images), "temporary directories left: %s" % leftovers(images))
    h.reap_original(w)
    cryotest.wait_pids_gone(list(before))
    rw = restore_and_verify(h, w, images, before, "after restore from the streamed image")
    h.verify_ok(rw, exit=True, when="after restore (exit)")


def test_memory_streamed_leave_running(h):
    """64 MiB shared copy-on-write between three processes, streamed with
    --leave-running: the original runs on and verifies; killed, it restores
    from the received image."""
    stream_memory_leave_running(h, ("--insecure",), ("--insecure",), "streamed")


def stream_memory_leave_running(h, server_auth, dump_auth, what):
    """cow 64 streamed with --leave-running; the original verifies and exits;
    the received image restores and verifies."""
    w = h.start_workload("cow", "64")
    h.wait_ready(w, timeout=30)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images, auth=server_auth)
    r = dump_to(h, w.pid, srv.addr, leave_running=True, auth=dump_auth)
    check(r.rc == 0, "dump --to --leave-running (%s) failed\n%s" % (what, r.describe()))
    check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
    pids = list(tree_ids(w.pid))
    h.verify_ok(w, exit=True, when="of the original after the %s dump" % what)
    check_eq(h.wait_exit(w), ("exit", 0), "original cow exit status")
    cryotest.wait_pids_gone(pids)
    rr = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(rr.pid)
    h.verify_ok(rw, when="after restore from the %s image" % what)
    h.verify_ok(rw, exit=True, when="after restore from the %s image (exit)" % what)


def test_compressed_stream(h):
    """zstd on the wire (the default) and none: a Python interpreter's heap
    goes over in far fewer bytes compressed; 64 MiB of random-looking pages
    uncompressed; both received images restore and verify."""
    for compress, workload in (("zstd:3", ("loop.py",)), ("none", ("cow", "64"))):
        w = h.start_workload(*workload)
        h.wait_ready(w, timeout=30)
        images = os.path.join(h.mkdir("recv-" + compress.replace(":", "")), "img")
        srv = Server(h, images)
        r = dump_to(h, w.pid, srv.addr, extra=["--compress", compress])
        check(r.rc == 0, "dump --to --compress %s failed\n%s" % (compress, r.describe()))
        check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
        m = re.search(r"([\d.]+) MiB of file data sent as ([\d.]+) MiB \(zstd (\d+)\)", r.stderr + (r.log or ""))
        if compress == "none":
            check(m is None, "--compress none said it compressed: %s" % r.stderr)
        else:
            check(m is not None, "no compression figure in: %s" % r.describe())
            raw, wire = float(m.group(1)), float(m.group(2))
            check(wire < raw / 2, "zstd: %.1f MiB sent as %.1f MiB" % (raw, wire))
            check_eq(m.group(3), "3", "zstd level")
        h.reap_original(w)
        pids = [w.pid]
        cryotest.wait_pids_gone(pids)
        rr = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(rr.pid)
        h.verify_ok(rw, exit=True, when="after restore of an image streamed with --compress " + compress)
    r = h.run_cryo(["dump", "-t", "1", "--to", "127.0.0.1:9", "--insecure", "--compress", "lz9"], log=False)
    check(r.rc == 2 and "zstd:LEVEL" in r.message, "--compress lz9: %s" % r.describe())
    # lz4 is for images on disk (test_compress.py), not the wire.
    r = h.run_cryo(["dump", "-t", "1", "--to", "127.0.0.1:9", "--insecure", "--compress", "lz4"], log=False)
    check(r.rc == 2 and "zstd:LEVEL" in r.message, "--compress lz4 with --to: %s" % r.describe())


def fault_count(text):
    m = re.search(r"fault points passed: (\d+)", text)
    check(m is not None, "no fault point count in: %s" % text)
    return int(m.group(1))


def check_untouched(h, w, before, when):
    check_eq(tree_ids(w.pid), before, "the source tree " + when)
    h.verify_ok(w, when="of the source tree " + when)


def test_receiver_killed(h):
    """kill -9 of the page server after each of several files, and once the
    image is in place but not acknowledged: the dump (kill mode) fails and
    leaves the tree running, untouched; no partial image looks complete."""
    w = h.start_workload("cow", "32")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    # How many fault points a receiver passes (a --leave-running dump).
    images = os.path.join(h.mkdir("recv-count"), "img")
    srv = Server(h, images, env={"CRYO_FAULT_POINT": "0"})
    check(dump_to(h, w.pid, srv.addr, leave_running=True).rc == 0, "counting dump failed")
    check_eq(srv.wait(), 0, "counting page-server")
    n = fault_count(srv.stderr())
    check(n >= 6, "only %d receiver fault points" % n)
    # 1: the first file; n - 2: before the rename; n - 1: before the ACK.
    for point in sorted({1, n // 2, n - 2, n - 1}):
        images = os.path.join(h.mkdir("recv-kill%d" % point), "img")
        srv = Server(h, images, env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": "KILL"})
        r = dump_to(h, w.pid, srv.addr)
        check_eq(srv.wait(), -signal.SIGKILL, "page-server killed at fault point %d" % point)
        check(r.rc == 1, "dump with its receiver killed at point %d should fail\n%s" % (point, r.describe()))
        check("left running" in r.message or "untouched" in r.message,
              "the dump should say the tree is left running: %s" % r.message)
        check_untouched(h, w, before, "after its receiver was killed at point %d" % point)
        if point == n - 1 and os.path.exists(images):
            # In place and durable, only the ACK missing: a complete image, and the tree runs on.
            check_eq(h.run_cryo(["show", images], log=False).rc, 0, "cryo show of the image renamed into place")
            shutil.rmtree(images)
        check_nothing_complete(h, images, "receiver killed at point %d" % point)


def test_sender_killed(h):
    """kill -9 of cryo dump --to at points spread over the dump (kill mode):
    the tree runs on untouched, the page server removes what it received."""
    # The count, from a tree of its own (the dump kills it).
    w0 = h.start_workload("cow", "16")
    h.wait_ready(w0, timeout=30)
    images = os.path.join(h.mkdir("recv-count"), "img")
    srv = Server(h, images)
    r = dump_to(h, w0.pid, srv.addr, env={"CRYO_FAULT_POINT": "0"})
    check(r.rc == 0, "counting dump failed\n%s" % r.describe())
    check_eq(srv.wait(), 0, "counting page-server")
    h.reap_original(w0)
    n = fault_count(r.stderr)
    w = h.start_workload("cow", "16")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    for frac in (0.3, 0.6, 0.85, 0.95):
        point = max(1, int(n * frac))
        images = os.path.join(h.mkdir("recv-sender%d" % point), "img")
        srv = Server(h, images)
        r = dump_to(h, w.pid, srv.addr, env={"CRYO_FAULT_POINT": str(point), "CRYO_FAULT_SIGNAL": "KILL"})
        check_eq(r.rc, -signal.SIGKILL, "dump killed at fault point %d of %d" % (point, n))
        rc = srv.wait()
        check(rc == 1, "page-server after its sender died at point %d: exit %r: %s" % (point, rc, srv.stderr()))
        check("nothing was kept" in srv.stderr(), "page-server should say it kept nothing: %s" % srv.stderr())
        check_untouched(h, w, before, "after cryo dump --to was killed at point %d of %d" % (point, n))
        check_nothing_complete(h, images, "sender killed at point %d" % point)


class FakeReceiver(threading.Thread):
    """A receiver that answers HELLO, reads frames, and then does `what`:
    'error' after the first file, or 'no-ack' (closes after END)."""

    def __init__(self, what):
        super().__init__(daemon=True)
        self.what = what
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(60)
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.got_end = False

    def run(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            if recv_frame(conn) is None:
                return
            conn.sendall(hello())
            while True:
                f = recv_frame(conn, timeout=60)
                if f is None:
                    return
                if self.what == "error" and f[0] == CLOSE:
                    conn.sendall(frame(ERROR, 0, b"disk full (a test)"))
                    conn.shutdown(socket.SHUT_WR)
                    while recv_frame(conn, timeout=10) is not None:
                        pass
                    return
                if f[0] == END:
                    self.got_end = True
                    return  # closes without an ACK


def test_kill_waits_for_ack(h):
    """Kill mode kills the tree only after the receiver's ACK: a receiver that
    takes everything but closes without an ACK, and one that refuses midway,
    leave the tree running, untouched, and the dump names why."""
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    for what, must in (("no-ack", "acknowledgement"), ("error", "disk full (a test)")):
        fake = FakeReceiver(what)
        fake.start()
        r = dump_to(h, w.pid, fake.addr)
        fake.join(timeout=30)
        check(r.rc == 1, "dump to a receiver that does %s should fail\n%s" % (what, r.describe()))
        check(must in r.message, "the dump should say %r: %s" % (must, r.message))
        if what == "no-ack":
            check(fake.got_end, "the fake receiver never got END\n%s" % r.describe())
        check_untouched(h, w, before, "after a dump to a receiver that does " + what)
        fake.listener.close()


def hostile(h, payload_frames, must, name, extra=()):
    """Sends `payload_frames` (bytes) to a fresh page server, then closes;
    the server must exit 1 within its bounds, say `must`, and keep nothing."""
    images = os.path.join(h.mkdir("hostile-" + name), "img")
    srv = Server(h, images, extra=extra)
    host, port = srv.addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(payload_frames)
        if name != "silent":
            s.shutdown(socket.SHUT_WR)
        rc = srv.wait(timeout=30)
    finally:
        s.close()
    check_eq(rc, 1, "page-server exit status after the %s stream (%s)" % (name, srv.stderr()))
    check(must in srv.stderr(), "page-server should say %r after the %s stream: %s" % (must, name, srv.stderr()))
    check(not os.path.exists(images), "the %s stream left %s" % (name, images))
    check(not leftovers(images), "the %s stream left %s" % (name, leftovers(images)))


def test_hostile_streams(h):
    """Names with a path, oversize frames, writes out of bounds, truncated
    streams, garbage and silence: refused by name, no crash, no hang, nothing kept."""
    def u64(v):
        return struct.pack("<Q", v)
    inv_end = frame(OPEN, 9, b"inventory.img") + frame(DATA, 9, u64(0) + b"x") + frame(CLOSE, 9, u64(1))
    cases = [
        ("dotdot", hello() + frame(OPEN, 1, b"../core-1.img"), "refused file name"),
        ("abspath", hello() + frame(OPEN, 1, b"/etc/passwd"), "refused file name"),
        ("oddname", hello() + frame(OPEN, 1, b"evil.sh"), "refused file name"),
        ("oversize", hello() + frame(OPEN, 1, b"core-1.img") + struct.pack("<IIII", DATA, 1, 64 << 20, 0),
         "more than the"),
        ("bounds", hello() + frame(OPEN, 1, b"core-1.img") + frame(DATA, 1, u64(1 << 31) + b"x"), "beyond what"),
        ("truncated-frame", hello() + frame(OPEN, 1, b"core-1.img") + struct.pack("<IIII", DATA, 1, 100, 0) + b"abc",
         "connection closed"),
        ("truncated-file", hello() + frame(OPEN, 1, b"core-1.img") + frame(DATA, 1, u64(0) + b"abc") +
         frame(CLOSE, 1, u64(10)), "truncated"),
        ("no-inventory", hello() + frame(OPEN, 1, b"core-1.img") + frame(CLOSE, 1, u64(0)) + frame(END), "without"),
        ("garbage-inventory", hello() + inv_end + frame(END), "does not validate"),
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 16, "unknown frame type"),
        ("newer-format", hello(fmt=99), "image format 99"),
        ("unknown-type", hello() + struct.pack("<IIII", 77, 0, 0, 0), "unknown frame type"),
        ("eof-after-hello", hello(), "connection closed"),
        ("zstd-garbage", hello() + frame(OPEN, 1, b"core-1.img") +
         frame(DATA_ZSTD, 1, u64(0) + struct.pack("<I", 10) + b"not zstd at all"), "does not decompress"),
        ("zstd-bomb", hello() + frame(OPEN, 1, b"core-1.img") +
         frame(DATA_ZSTD, 1, u64(0) + struct.pack("<I", 10) + zstd_raw(b"x" * 100)), "does not decompress"),
        ("zstd-short", hello() + frame(OPEN, 1, b"core-1.img") +
         frame(DATA_ZSTD, 1, u64(0) + struct.pack("<I", 200) + zstd_raw(b"x" * 100)), "decompressed to 100"),
        ("zstd-bounds", hello() + frame(OPEN, 1, b"core-1.img") +
         frame(DATA_ZSTD, 1, u64(1 << 31) + struct.pack("<I", 100) + zstd_raw(b"x" * 100)), "beyond what"),
    ]
    for name, data, must in cases:
        hostile(h, data, must, name)
    hostile(h, hello(), "no progress", "silent", extra=["--timeout", "2"])


def test_needs_insecure(h):
    """Without TLS options both sides refuse unless told --insecure."""
    w = h.start_workload("sleep")
    r = h.run_cryo(["dump", "-t", str(w.pid), "--to", "127.0.0.1:9"], log=False)
    check(r.rc == 2 and "--insecure" in r.message, "dump --to without --insecure: %s" % r.describe())
    d = os.path.join(h.mkdir("recv"), "img")
    r = h.run_cryo(["page-server", "--listen", "127.0.0.1:0", "-D", d], log=False)
    check(r.rc == 2 and "--insecure" in r.message, "page-server without --insecure: %s" % r.describe())
    check(not os.path.exists(d), "page-server without --insecure made %s" % d)
    r = h.run_cryo(["dump", "-t", str(w.pid)], log=False)
    check(r.rc == 2 and "-D DIR" in r.message, "dump with neither -D nor --to: %s" % r.describe())
    r = h.run_cryo(["dump", "-t", str(w.pid), "-D", d, "--to", "127.0.0.1:9", "--insecure"], log=False)
    check(r.rc == 2 and "not both" in r.message, "dump with -D and --to: %s" % r.describe())
    check(not os.path.exists(d), "a usage error made %s" % d)
    st = cryotest.proc_status(w.pid)
    check(st["TracerPid"] == "0" and st["State"][0] in "SR", "the tree was touched: %s" % st["State"])


def test_no_server(h):
    """Nothing listens at --to: the dump fails before it seizes anything."""
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = dump_to(h, w.pid, "127.0.0.1:%d" % port)
    check(r.rc == 1 and "connect" in r.message, "dump --to a closed port: %s" % r.describe())
    check_untouched(h, w, before, "after a dump to a closed port")


TESTS = [
    test_tree_streamed_kill,
    test_memory_streamed_leave_running,
    test_compressed_stream,
    test_kill_waits_for_ack,
    test_receiver_killed,
    test_sender_killed,
    test_hostile_streams,
    test_needs_insecure,
    test_no_server,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
