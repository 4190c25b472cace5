#!/usr/bin/python3
"""End-to-end tests of post-copy migration: `cryo migrate -t PID --to
ADDR:PORT --lazy` into `cryo page-server --restore --pidns new` over loopback
(TLS with a pre-shared key, and --insecure once).

The source freezes the tree and sends its image without the contents of its
private anonymous memory; the page server restores the tree lazily into a new
PID namespace (on one machine the source tree keeps its pids: it stays frozen
to serve the pages), the tree runs there at once and its pages come from the
source on first touch and from a background prefetch; once every page is
there the source kills its original.

The lazymem workload (tests/workloads/lazymem.c) checks every byte of its
memory itself. With CRYO_LAZY_HOLD=FILE in the page server's environment its
background prefetch waits until FILE exists, so that the checks made while it
is held fetch pages on first touch. The tests:
  - 256 MiB (TLS): checked page by page while the prefetch is held, then the
    whole migration finishes and the tree checks itself again;
  - a tree of two (--insecure), each process checking its memory;
  - the source cryo killed (SIGKILL) once the tree runs on the target, pages
    still missing: the target kills its tree and the page server exits 1
    naming the pid and the address; the original dies with its cryo
    (PTRACE_O_EXITKILL), never two copies;
  - the page server killed just before it would release the tree: the
    source's original resumes untouched and checks itself.
  - unplanned VMAs (feature remote-vmas): the target learns from the source
    which pages exist; never-written pages read zero, the private file
    mapping's unwritten pages the file.

Run: test_postcopy.py --cryo PATH --workloads DIR [NAME ...]
"""
import contextlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, read_text  # noqa: E402
from test_migrate import Migrate  # noqa: E402
from test_stream import Server  # noqa: E402
from test_tls import Pki  # noqa: E402


def start(h, mib, *extra):
    w = h.start_workload("lazymem", str(mib), *extra)
    h.wait_ready(w, timeout=60)
    return w


def wait_file(path, timeout=60.0, what=None):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and read_text(path, "").strip()):
        check(time.monotonic() < deadline, "%s did not appear within %.0f s" % (what or path, timeout))
        time.sleep(0.01)


class PostCopy:
    """A page server (--restore --pidns new, prefetch held) and a migrate
    --lazy into it."""

    def __init__(self, h, w, auth, hold=True, server_env=None, server_extra=(), migrate_extra=()):
        self.h = h
        self.hold = os.path.join(h.mkdir("hold"), "go") if hold else None
        env = dict(server_env or {})
        if self.hold:
            env["CRYO_LAZY_HOLD"] = self.hold
        self.images = os.path.join(h.mkdir("recv"), "img")
        self.pidfile = os.path.join(h.tmp_root, "postcopy-%d.pid" % w.pid)
        self.srv = Server(h, self.images, auth=auth, extra=["--restore", "--pidns", "new", "--pidfile", self.pidfile] +
                          list(server_extra), env=env)
        self.m = Migrate(h, w.pid, self.srv.addr, list(auth) + ["--lazy"] + list(migrate_extra))

    def restored(self, w, timeout=60.0):
        """The tree restored on the target (host pid of its root)."""
        wait_file(self.pidfile, timeout, "the pidfile of page-server --restore --pidns new (%s)" % self.srv.stderr())
        pid = int(read_text(self.pidfile).strip())
        self.h.tracked_pids.append(pid)
        return w.restored(pid)

    def release(self):
        if self.hold:
            open(self.hold, "w").close()


def lazy_line(text):
    for line in text.splitlines():
        if "lazy restore:" in line:
            return line.split("lazy restore:")[1].strip()
    return None


def finish_and_check(h, w, pc, rw, when):
    """The migration ends: both sides exit 0, the original is gone, the
    restored tree checks itself once every page is in, then exits."""
    pc.release()
    check_eq(pc.m.wait(), 0, "cryo migrate --lazy exit status (%s)" % pc.m.stderr())
    check_eq(pc.srv.wait(), 0, "page-server --restore exit status (%s)" % pc.srv.stderr())
    check("post-copy" in pc.m.stderr(), "migrate's success line: %s" % pc.m.stderr())
    line = lazy_line(pc.srv.stderr())
    check(line is not None, "the page server did not report the lazy pages: %s" % pc.srv.stderr())
    h.note("%s: %s" % (when, line))
    check_eq(h.reap_original(w, timeout=30), signal.SIGKILL, "the original's end")
    h.verify_ok(rw, when=when + ", every page in")
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    cryotest.wait_pids_gone([rw.pid], timeout=20)


def test_256mib_tls_page_by_page(h):
    k = Pki(h.mkdir("pki"))
    w = start(h, 256)
    h.verify_ok(w, when="before migrate")
    pc = PostCopy(h, w, k.psk("psk1"))
    rw = pc.restored(w)
    # The prefetch is held: every page this check reads comes on first touch.
    t0 = time.monotonic()
    h.verify_ok(rw, timeout=120, when="on the target, prefetch held (pages on first touch)")
    h.note("256 MiB checked on first touch in %.2f s" % (time.monotonic() - t0))
    check(pc.m.p.poll() is None, "the source finished before every page was in: %s" % pc.m.stderr())
    finish_and_check(h, w, pc, rw, "256 MiB over TLS")


def test_tree_of_two_insecure(h):
    w = start(h, 32, "tree")
    child = int(read_text("/proc/%d/task/%d/children" % (w.pid, w.pid)).split()[0])
    h.tracked_pids.append(child)
    pc = PostCopy(h, w, ["--insecure"])
    rw = pc.restored(w)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(w.path("child-result"))
    open(w.path("child-verify"), "w").close()
    wait_file(w.path("child-result"), what="the restored child's result")
    line = read_text(w.path("child-result")).strip()
    check(line.startswith("OK"), "the restored child, prefetch held: %s" % line)
    h.verify_ok(rw, when="the parent, prefetch held")
    finish_and_check(h, w, pc, rw, "a tree of two, insecure")
    cryotest.wait_pids_gone([child], timeout=20)


def test_unplanned_vmas(h):
    """The dump leaves the process's private anonymous VMAs unplanned (feature
    remote-vmas): the target asks the source which pages exist. Pages never
    written there (the "holes", "sparse" and only-read "zeroread" regions of
    lazymem) must read zero, written ones their bytes, the private file
    mapping's unwritten pages the file, first on touch (prefetch held), then
    with every page in."""
    w = start(h, 64)
    src_log = os.path.join(h.tmp_root, "unplanned-source.log")
    dst_log = os.path.join(h.tmp_root, "unplanned-target.log")
    pc = PostCopy(h, w, ["--insecure"], server_extra=["--log-file", dst_log], migrate_extra=["--log-file", src_log])
    rw = pc.restored(w)
    h.verify_ok(rw, timeout=120, when="on the target, prefetch held (pages on first touch)")
    finish_and_check(h, w, pc, rw, "unplanned VMAs")
    src = read_text(src_log, "")
    check("left unplanned" in src, "the source's log should say the VMAs were left unplanned: %s" % src[-2000:])
    dst = read_text(dst_log, "")
    m = re.search(r"VMAs unplanned at the dump: (\d+) pages of them exist on the source", dst)
    check(m is not None, "the target's log should say which pages exist on the source: %s" % dst[-2000:])
    # 64 MiB + holes (a quarter of 16) + moving + unmapping + sparse (4 pages), not the only-read 16 MiB
    # (the zero page), unless this kernel gives read faults pages of their own.
    n = int(m.group(1))
    low = 16384 + 1024 + 4096 + 4096 + 4
    high = low + (4096 if cryotest.kernel_maps_zero_page() else 8192)  # (zeroread's pages, or its huge zero pages)
    check(low <= n < high,
          "pages the source said exist: %d (the zero pages of zeroread are not among them, kernel maps the zero "
          "page: %s)" % (n, cryotest.kernel_maps_zero_page()))
    h.note("unplanned VMAs: %d pages exist on the source" % n)


def test_source_killed_mid_transfer(h):
    k = Pki(h.mkdir("pki"))
    w = start(h, 64)
    pc = PostCopy(h, w, k.psk("psk1"))
    rw = pc.restored(w)
    os.kill(pc.m.p.pid, signal.SIGKILL)
    pc.m.p.wait(timeout=10)
    # The original dies with its cryo (committed: never two copies).
    check_eq(h.reap_original(w, timeout=30), signal.SIGKILL, "the original once its cryo died after the commit")
    # The check touches pages not yet there: they cannot come.
    with open(rw.path("verify"), "w") as f:
        f.write("check\n")
    rc = pc.srv.wait(timeout=60)
    err = pc.srv.stderr()
    check_eq(rc, 1, "page-server exit status once its source died (%s)" % err)
    check("pid %d" % w.pid in err and "pages at 0x" in err and "killed" in err,
          "the page server should name the pid, the address and the kill: %s" % err)
    check(read_text(rw.path("result")) is None, "the restored tree answered: %s" % read_text(rw.path("result")))
    cryotest.wait_pids_gone([rw.pid], timeout=20)
    pc.release()


def test_target_killed_before_resume(h):
    k = Pki(h.mkdir("pki"))
    w = start(h, 32)
    before = cryotest.proc_stat(w.pid)
    pc = PostCopy(h, w, k.psk("psk1"), hold=False,
                  server_env={"CRYO_RESTORE_FAULT_POINT": "post-copy-commit"})
    rc = pc.srv.wait(timeout=60)
    check(rc != 0, "the page server should have died at its commit point (%s)" % pc.srv.stderr())
    check_eq(pc.m.wait(), 1, "migrate --lazy whose target died before the tree ran (%s)" % pc.m.stderr())
    check("left running, untouched" in pc.m.stderr(), "migrate should say the tree is untouched: %s" % pc.m.stderr())
    check(not os.path.exists(pc.pidfile) or not read_text(pc.pidfile, "").strip(),
          "the target wrote a pidfile: %s" % read_text(pc.pidfile))
    after = cryotest.proc_stat(w.pid)
    check(after is not None and after["state"] != "Z", "the original is gone")
    check_eq(after["ppid"], before["ppid"], "the original's parent")
    h.verify_ok(w, when="of the original after its target died")
    h.verify_ok(w, exit=True, when="of the original (exit)")


if __name__ == "__main__":
    sys.exit(cryotest.main([test_256mib_tls_page_by_page, test_tree_of_two_insecure,
                            test_source_killed_mid_transfer, test_target_killed_before_resume,
                            test_unplanned_vmas], __doc__))
