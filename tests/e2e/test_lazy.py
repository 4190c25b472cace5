#!/usr/bin/python3
"""End-to-end tests of lazy restores (`cryo restore --lazy`, issue 11 item 4).

The lazymem workload (tests/workloads/lazymem.c) checks every byte of its
memory itself: a region of N MiB with a pattern on every page, a region with
holes (pages never written read zero), and, once it "acted" while pages were
still missing, a child it forked (which checks every page), pages it dropped
(MADV_DONTNEED: zero), a region it mremap'd (its bytes follow it) and a half
it unmapped and mapped afresh (zero).

With CRYO_LAZY_HOLD=FILE in cryo's environment the background prefetch waits
until FILE exists, so that the program's checks while it is held fetch pages
on first touch (userfaultfd missing faults), and its actions happen while
pages are missing. The tests:
  - 256 MiB restored lazily in kill mode (checked while the prefetch is held,
    then once every page is in), then again from the same image (rewind),
    and after a --leave-running dump;
  - a tree of two processes, each with memory of its own; 8 threads; a
    zstd-compressed image; an incremental image (pages from its parent's);
  - fork, MADV_DONTNEED, mremap and munmap while pages are missing;
  - the page file truncated while pages are missing: the tree is killed,
    cryo fails naming the pages and the file, nothing is left;
  - cryo killed (SIGKILL) while pages are missing: its guardian kills the
    tree, nothing is left;
  - --lazy with --pidns new: the namespace's init serves the pages.

Run: test_lazy.py --cryo PATH --workloads DIR [NAME ...]
"""
import contextlib
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402


def start(h, mib, *extra):
    w = h.start_workload("lazymem", str(mib), *extra)
    h.wait_ready(w)
    return w


def dump_kill(h, w):
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    return images


@contextlib.contextmanager
def held_prefetch(h):
    """cryo started inside holds its prefetch until release() is called."""
    hold = os.path.join(h.mkdir("hold"), "go")
    os.environ["CRYO_LAZY_HOLD"] = hold
    try:
        yield lambda: open(hold, "w").close()
    finally:
        del os.environ["CRYO_LAZY_HOLD"]


def wait_file(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        check(time.monotonic() < deadline, "%s did not appear within %.0f s" % (path, timeout))
        time.sleep(0.01)


def lazy_report(result):
    text = (result.log or "") + result.stderr
    for line in text.splitlines():
        if "lazy restore:" in line:
            return line
    return None


def restore_lazy_detached(h, w, images, when):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=["--lazy"])
    line = lazy_report(r.result)
    check(line is not None and "prefetched" in line, "%s: cryo did not report the lazy pages\n%s"
          % (when, r.result.describe()))
    h.note("%s: %s" % (when, line.split("lazy restore:")[1].strip()))
    rw = w.restored(r.pid)
    h.verify_ok(rw, when=when)
    h.verify_ok(rw, exit=True, when=when + " (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "exit status " + when)
    cryotest.wait_pids_gone([w.pid])


def restore_lazy_held(h, w, images):
    """An attached lazy restore whose prefetch is held: (restored, release)."""
    with held_prefetch(h) as release:
        r = h.restore(images, detach=False, expected_pid=w.pid, extra=["--lazy"])
    return r, release


def test_256mib_kill_mode_and_rewind(h):
    w = start(h, 256)
    images = dump_kill(h, w)
    r, release = restore_lazy_held(h, w, images)
    rw = w.restored(r.pid)
    # Every page checked while the prefetch waits: each comes on first touch.
    h.verify_ok(rw, when="while the prefetch is held")
    release()
    h.verify_ok(rw, when="once the prefetch went on")
    h.verify_ok(rw, exit=True, when="(exit)")
    res = h.cryo_result(r, timeout=30)
    check_eq(res.rc, 0, "exit status of the attached lazy restore (the workload's)")
    log = res.log or ""
    check("every lazy page is in" in log, "the lazy restore did not finish its pages:\n%s" % res.describe())
    cryotest.wait_pids_gone([w.pid])
    restore_lazy_detached(h, w, images, "after restoring the same image again (rewind)")


def test_leave_running_mode(h):
    w = start(h, 64)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="the original, left running")
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    restore_lazy_detached(h, w, images, "after a --leave-running dump")


def test_dump_again_once_every_page_is_in(h):
    """Once cryo is done the VMAs are plain again (no VmFlags um): the tree
    can be dumped and restored as any other."""
    w = start(h, 32)
    images = dump_kill(h, w)
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=["--lazy"])
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after the lazy restore")
    smaps = cryotest.read_text("/proc/%d/smaps" % r.pid) or ""
    check(" um" not in smaps, "a VMA is still registered with a userfaultfd after cryo finished")
    again = h.mkdir("again")
    h.dump(r.pid, again)
    check_eq(h.wait_exit(r.pid)[0], "signal", "how the dumped restored tree ended")
    cryotest.wait_pids_gone([w.pid])
    r2 = h.restore(again, detach=True, expected_pid=w.pid)
    rw2 = w.restored(r2.pid)
    h.verify_ok(rw2, when="restored from a dump of the lazily restored tree")
    h.verify_ok(rw2, exit=True, when="(exit)")
    check_eq(h.wait_exit(rw2), ("exit", 0), "exit status")
    cryotest.wait_pids_gone([w.pid])


def test_tree_of_two(h):
    w = start(h, 32, "tree")
    child = int(cryotest.read_text("/proc/%d/task/%d/children" % (w.pid, w.pid)).split()[0])
    images = dump_kill(h, w)
    cryotest.wait_pids_gone([child])
    r, release = restore_lazy_held(h, w, images)
    h.tracked_pids.append(child)
    rw = w.restored(r.pid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(w.path("child-result"))
    open(w.path("child-verify"), "w").close()
    wait_file(w.path("child-result"))
    line = cryotest.read_text(w.path("child-result")).strip()
    check(line.startswith("OK"), "the restored child, prefetch held: %s" % line)
    h.verify_ok(rw, when="the parent, prefetch held")
    release()
    h.verify_ok(rw, exit=True, when="(exit)")
    check_eq(h.cryo_result(r, timeout=30).rc, 0, "exit status of the attached lazy restore")
    cryotest.wait_pids_gone([w.pid, child])


def test_fork_madvise_mremap_munmap_while_missing(h):
    w = start(h, 32)
    images = dump_kill(h, w)
    r, release = restore_lazy_held(h, w, images)
    rw = w.restored(r.pid)
    open(w.path("act"), "w").close()
    wait_file(w.path("acted"))
    line = h.verify_ok(rw, when="after fork, MADV_DONTNEED, mremap and munmap, prefetch held")
    check("acted=1" in line, "the workload did not act: %s" % line)
    release()
    h.verify_ok(rw, when="once the prefetch went on")
    h.verify_ok(rw, exit=True, when="(exit)")
    res = h.cryo_result(r, timeout=30)
    check_eq(res.rc, 0, "exit status of the attached lazy restore")
    check("forked address space" in (lazy_report(res) or ""), "the fork was not served:\n%s" % res.describe())


def test_threads(h):
    w = h.start_workload("threads", "8")
    h.wait_ready(w)
    h.verify_ok(w, when="before the dump")
    images = dump_kill(h, w)
    r, release = restore_lazy_held(h, w, images)
    rw = w.restored(r.pid)
    check_eq(len(os.listdir("/proc/%d/task" % r.pid)), 9, "threads of the restored process")
    # Every thread's stack and TLS come on first touch.
    h.verify_ok(rw, when="8 threads, prefetch held")
    release()
    h.verify_ok(rw, exit=True, when="(exit)")
    check_eq(h.cryo_result(r, timeout=30).rc, 0, "exit status of the attached lazy restore")
    cryotest.wait_pids_gone([w.pid])


def test_compressed_image(h):
    w = start(h, 32)
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--compress", "zstd"])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    restore_lazy_detached(h, w, images, "a zstd-compressed image, restored lazily")


def test_incremental_image(h):
    w = start(h, 32)
    parent = h.mkdir("parent")
    h.dump(w.pid, parent, leave_running=True)
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--parent", parent])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    # Nearly every page is the parent image's: served from its page file.
    restore_lazy_detached(h, w, images, "an incremental image, restored lazily")


def check_nothing_left(h, pid):
    cryotest.wait_pids_gone([pid], timeout=20)
    deadline = time.monotonic() + 10
    while True:
        guards = [p for p in os.listdir("/proc") if p.isdigit() and
                  (cryotest.read_text("/proc/%s/comm" % p) or "").strip() == "cryo-lazy-guard" and
                  (cryotest.proc_stat(int(p)) or {}).get("state") not in (None, "Z")]
        if not guards:
            break
        check(time.monotonic() < deadline, "the lazy restore's guardian is still there: %s" % guards)
        time.sleep(0.05)


def test_page_file_gone_kills_the_tree(h):
    w = start(h, 32)
    images = dump_kill(h, w)
    r, release = restore_lazy_held(h, w, images)
    rw = w.restored(r.pid)
    page_file = os.path.join(images, "pages-%d.img" % w.pid)
    os.truncate(page_file, 8192)
    # The check touches pages not yet in: they cannot be read.
    with open(rw.path("verify"), "w") as f:
        f.write("check\n")
    res = h.cryo_result(r, timeout=30)
    check_eq(res.rc, 1, "exit status of cryo when a page cannot be read\n%s" % res.describe())
    check("pages at" in res.message and page_file in res.message and "killed" in res.message,
          "the error should name the pages, the file and the kill: %s" % res.message)
    check(cryotest.read_text(rw.path("result")) is None, "the workload answered: %s"
          % cryotest.read_text(rw.path("result")))
    check_nothing_left(h, w.pid)
    release()


def test_cryo_killed_kills_the_tree(h):
    w = start(h, 32)
    images = dump_kill(h, w)
    r, release = restore_lazy_held(h, w, images)
    os.kill(r.cryo.pid, signal.SIGKILL)
    r.cryo.wait(timeout=10)
    check_nothing_left(h, w.pid)
    release()


def test_pidns_new(h):
    """--lazy --pidns new: the namespace's init serves the pages (checked
    while the prefetch is held, so on first touch), detached and attached."""
    w = start(h, 32)
    images = dump_kill(h, w)
    with held_prefetch(h) as release:
        r = h.restore(images, detach=False, extra=["--lazy", "--pidns", "new"])
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="in a new PID namespace, prefetch held")
    release()
    h.verify_ok(rw, exit=True, when="in a new PID namespace (exit)")
    check_eq(h.cryo_result(r, timeout=30).rc, 0, "exit status of the attached lazy restore --pidns new")
    cryotest.wait_pids_gone([rw.pid], timeout=20)
    r = h.restore(images, detach=True, extra=["--lazy", "--pidns", "new"])
    line = lazy_report(r.result)
    check(line is not None and "prefetched" in line, "restore -d --lazy --pidns new did not report the lazy pages\n%s"
          % r.result.describe())
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="in a new PID namespace, detached")
    h.verify_ok(rw, exit=True, when="in a new PID namespace, detached (exit)")
    cryotest.wait_pids_gone([rw.pid], timeout=20)


if __name__ == "__main__":
    sys.exit(cryotest.main([test_256mib_kill_mode_and_rewind, test_leave_running_mode,
                            test_dump_again_once_every_page_is_in, test_tree_of_two,
                            test_threads, test_compressed_image, test_incremental_image,
                            test_fork_madvise_mremap_munmap_while_missing, test_page_file_gone_kills_the_tree,
                            test_cryo_killed_kills_the_tree, test_pidns_new], __doc__))
