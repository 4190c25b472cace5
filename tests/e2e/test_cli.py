#!/usr/bin/python3
"""End-to-end tests of what cryo says and how it exits (issue 12, messages):
the line on success (exact wording, sizes in KiB below 1 MiB), -q, usage
errors (exit status 2) against failures (exit status 1), --force to replace
an image, `cryo restore DIR`, the wait for a pid a dying original still holds,
and the tracer named when a process is already traced.

Run: test_cli.py --cryo PATH --workloads DIR [NAME ...]
"""
import ctypes
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_status, read_text  # noqa: E402

PTRACE_SEIZE = 0x4206
SIZE_RE = r"[0-9]+(?:\.[0-9])? KiB|[0-9]+\.[0-9] MiB|[0-9]+\.[0-9] GiB"


def format_size(n):
    """cryo's FormatSize (src/base/size_format.cc)."""
    for unit, name in ((1024, "KiB"), (1024 ** 2, "MiB")):
        if round(n / unit * 10) < 10240:
            if name == "KiB" and n % 1024 == 0:
                return "%d KiB" % (n // 1024)
            return "%.1f %s" % (n / unit, name)
    return "%.1f GiB" % (n / 1024 ** 3)


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def quiet_cryo(h, args, tag=None):
    """cryo without -v and without a log file: what a user sees."""
    return h.run_cryo(args, log=False, tag=tag)


def restore_positional(h, images, extra=()):
    """`cryo restore DIR -d` (positional directory), without -v; returns
    (CryoResult, restored pid or None)."""
    pidfile = os.path.join(h.tmp_root, "restore-%d.pid" % time.monotonic_ns())
    r = quiet_cryo(h, ["restore", images, "-d", "--pidfile", pidfile] + list(extra), tag="restore")
    txt = read_text(pidfile)
    pid = int(txt) if txt and txt.strip().isdigit() else None
    if pid is not None:
        h.tracked_pids.append(pid)
    return r, pid


def test_success_lines(h):
    """Without -v a dump and a restore each print exactly one line: how many
    processes, the root pid, the directory, the image size and the time."""
    w = h.start_workload("tree", "4")
    h.wait_ready(w, timeout=30)
    tree_pids_before = [w.pid] + h._descendants(w.pid)  # zombies included
    n = len(tree_pids_before)
    check(n > 1, "the tree workload should have several processes, found %d" % n)
    images = h.mkdir("img")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images])
    check_eq(r.rc, 0, "dump exit status\n" + r.describe())
    h.reap_original(w)
    pids = tree_pids_before
    want = r"cryo: dumped %d processes \(pid %d\) to %s: (%s) in [0-9]+\.[0-9]{2} s, frozen [0-9]+ ms\n" % (
        n, w.pid, re.escape(images), SIZE_RE)
    m = re.fullmatch(want, r.stderr)
    check(m, "dump's stderr: expected one line matching %r, got %r" % (want, r.stderr))
    check_eq(m.group(1), format_size(dir_bytes(images)), "size on the success line (the image's files)")
    cryotest.wait_pids_gone(pids)
    r, pid = restore_positional(h, images)
    check_eq(r.rc, 0, "restore exit status\n" + r.describe())
    check_eq(pid, w.pid, "restored pid")
    want = r"cryo: restored %d processes \(pid %d\) in [0-9]+\.[0-9]{2} s\n" % (n, w.pid)
    check(re.fullmatch(want, r.stderr), "restore's stderr: expected one line matching %r, got %r" % (want, r.stderr))
    h.verify_ok(w.restored(pid), when="after a restore by `cryo restore DIR`")


def test_small_sizes_in_kib(h):
    """A small image is sized in KiB on the success line, in --progress and in
    `cryo show` (never "0 MiB")."""
    w = h.start_workload("sleep")
    images = h.mkdir("img")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images, "-R", "--progress"])
    check_eq(r.rc, 0, "dump exit status\n" + r.describe())
    check("MiB" not in r.stderr, "a small image sized in MiB: %r" % r.stderr)
    size = format_size(dir_bytes(images))
    check(size.endswith(" KiB"), "the image of sleep should be below 1 MiB, it is %s" % size)
    line = "cryo: dumped 1 process (pid %d) to %s: %s in " % (w.pid, images, size)
    check(line in r.stderr, "expected %r in the dump's stderr: %r" % (line, r.stderr))
    check(re.search(r"writing pages (%s) of (%s)" % (SIZE_RE, SIZE_RE), r.stderr),
          "--progress should size pages in KiB: %r" % r.stderr)
    show = quiet_cryo(h, ["show", images], tag="show")
    check_eq(show.rc, 0, "cryo show exit status\n" + show.describe())
    check(re.search(r"pages stored \([0-9.]+ KiB\)", show.stdout), "cryo show: %s" % show.stdout[:600])


def test_quiet(h):
    """-q (and --quiet) silence the success lines."""
    w = h.start_workload("sleep")
    images = h.mkdir("img")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images, "-q"])
    check_eq((r.rc, r.stderr), (0, ""), "dump -q: exit status and stderr")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    r, pid = restore_positional(h, images, ["--quiet"])
    check_eq((r.rc, r.stderr, pid), (0, "", w.pid), "restore --quiet: exit status, stderr and pid")


def expect_usage_error(h, args, words):
    r = quiet_cryo(h, args, tag="usage")
    check_eq(r.rc, 2, "exit status of cryo %s (a usage error)\n%s" % (" ".join(args), r.describe()))
    for word in words:
        check(word in r.stderr, "cryo %s: expected %r in stderr: %r" % (" ".join(args), word, r.stderr))
    check("left running" not in r.stderr and "untouched" not in r.stderr,
          "cryo %s: a usage error is not a dump that failed: %r" % (" ".join(args), r.stderr))
    return r


def test_exit_status(h):
    """2 for usage errors (the option parser's, invalid pids, a missing
    image directory, a bad --cgroup-root), 1 for failures, 0 for --help and
    --version; nothing is created for a usage error."""
    images = os.path.join(h.tmp_root, "never-made")
    expect_usage_error(h, ["dump", "-t", "0", "-D", images], ["--pid: pid 0 names no process (pids are positive numbers)"])
    expect_usage_error(h, ["dump", "-t", "-3", "-D", images], ["pid -3 names no process"])
    expect_usage_error(h, ["dump", "-t", "12ab", "-D", images], ["'12ab' is not a pid"])
    expect_usage_error(h, ["dump", "-t", "99999999999", "-D", images], ["out of range", "pid_max"])
    expect_usage_error(h, ["check", "-t", "0"], ["pid 0 names no process"])
    expect_usage_error(h, ["dump", "-D", images], ["--pid is required"])
    expect_usage_error(h, ["dump", "-t", "1", "-D", images, "--no-such-option"], ["--no-such-option"])
    expect_usage_error(h, [], ["subcommand is required"])
    expect_usage_error(h, ["-v", "undump", "-t", "1"], ["unknown command 'undump'"])
    expect_usage_error(h, ["restore"], ["the image directory is missing: cryo restore DIR (or -D DIR)"])
    expect_usage_error(h, ["restore", images, "-D", images + "2"], ["two image directories given"])
    expect_usage_error(h, ["restore", images, "--cgroup-root", "relative"], ["--cgroup-root", "PATH"])
    check(not os.path.exists(images), "a usage error created %s" % images)
    # Failures.
    pid = cryotest.free_pid()
    r = quiet_cryo(h, ["dump", "-t", str(pid), "-D", images])
    check_eq(r.rc, 1, "exit status of a dump of a pid that does not exist\n" + r.describe())
    check("no process with pid %d" % pid in r.stderr, "the error should say there is no pid %d: %r" % (pid, r.stderr))
    r = quiet_cryo(h, ["restore", images])
    check_eq(r.rc, 1, "exit status of a restore from a missing directory\n" + r.describe())
    r = quiet_cryo(h, ["show", images])
    check_eq(r.rc, 1, "exit status of cryo show of a missing directory\n" + r.describe())
    for args in (["--help"], ["dump", "--help"], ["restore", "--help"], ["--version"], ["-V"]):
        r = quiet_cryo(h, args, tag="help")
        check_eq(r.rc, 0, "exit status of cryo %s\n%s" % (" ".join(args), r.describe()))
        check(r.stdout.strip(), "cryo %s printed nothing" % " ".join(args))


def test_force(h):
    """A dump into a directory holding an image is refused, naming the
    directory and --force, before the process is touched; with --force it
    replaces the image."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    inventory = os.path.join(images, "inventory.img")
    before = {f: open(os.path.join(images, f), "rb").read() for f in os.listdir(images)}
    h.verify_ok(w, when="after the first dump")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images])
    check_eq(r.rc, 1, "exit status of a dump into a directory holding an image\n" + r.describe())
    want = "cryo: error: %s already holds an image (inventory.img): give --force to replace it, or choose another directory\n" % images
    check_eq(r.stderr, want, "the refusal")
    after = {f: open(os.path.join(images, f), "rb").read() for f in os.listdir(images)}
    check(after == before, "the refused dump changed the image in %s" % images)
    check(pid_alive(w.pid), "the refused dump (kill mode) killed pid %d" % w.pid)
    check_eq(proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    h.verify_ok(w, when="after the refused dump")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images, "--force"])
    check_eq(r.rc, 0, "dump --force exit status\n" + r.describe())
    check(r.stderr.startswith("cryo: dumped 1 process (pid %d) to %s: " % (w.pid, images)), "dump --force: %r" % r.stderr)
    check(os.path.exists(inventory), "no inventory after dump --force")
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    rs = h.restore(images, detach=True, expected_pid=w.pid)
    h.verify_ok(w.restored(rs.pid), when="after a restore of the image replaced with --force")


def test_restore_dir_positional(h):
    """`cryo restore DIR` and `cryo restore -D DIR` (the same image twice)."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    r, pid = restore_positional(h, images)
    check_eq((r.rc, pid), (0, w.pid), "cryo restore DIR: exit status and pid\n" + r.describe())
    h.verify_ok(w.restored(pid), when="after cryo restore DIR")
    h.cleanup_one(pid)
    # The first instance wrote its shared file mapping (shared.dat): the
    # program's own change, allowed by name for the second restore.
    rs = h.restore(images, detach=True, expected_pid=w.pid, extra=["--allow-changed", w.path("shared.dat")])  # -D DIR
    h.verify_ok(w.restored(rs.pid), when="after cryo restore -D DIR")


def start_restore_bg(h, images):
    base = os.path.join(h.tmp_root, "restore-bg-%d" % time.monotonic_ns())
    pidfile = base + ".pid"
    err = open(base + ".err", "wb")
    p = subprocess.Popen([h.cryo, "restore", images, "-d", "--pidfile", pidfile], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err, close_fds=True)
    err.close()
    h.cryo_popens.append(p)
    return p, base + ".err", pidfile


def wait_for_text(path, text, p, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in read_text(path, ""):
            return
        if p.poll() is not None and text not in read_text(path, ""):
            fail("cryo exited (status %s) without saying %r: %r" % (p.returncode, text, read_text(path, "")))
        time.sleep(0.02)
    fail("cryo did not say %r within %.0f s: %r" % (text, timeout, read_text(path, "")))


def test_wait_for_exiting_pid(h):
    """Right after a kill-mode dump the original may still hold its pid (a
    zombie its parent has not reaped): the restore says it waits for it, and
    goes on once it is gone."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    check_eq(cryotest.pid_state(w.pid), "Z", "the original after the dump (not reaped yet)")
    p, err, pidfile = start_restore_bg(h, images)
    h.tracked_pids.append(w.pid)
    wait_for_text(err, "cryo: waiting for pid %d (still exiting) ...\n" % w.pid, p)
    time.sleep(0.2)
    check(p.poll() is None, "cryo gave up at once: %r" % read_text(err, ""))
    h.reap_original(w)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        fail("cryo restore did not finish once the original was reaped: %r" % read_text(err, ""))
    check_eq(rc, 0, "restore exit status: %r" % read_text(err, ""))
    lines = read_text(err, "").splitlines()
    check_eq(len(lines), 2, "lines on stderr (the wait, then the success): %r" % lines)
    check(lines[1].startswith("cryo: restored 1 process (pid %d) in " % w.pid), "second line: %r" % lines[1])
    check_eq(int(read_text(pidfile).strip()), w.pid, "restored pid")
    h.verify_ok(w.restored(w.pid), when="after the restore that waited")


def test_wait_is_bounded(h):
    """A zombie nobody reaps: the restore waits a bounded time, names the
    parent that does not reap it, fails, and leaves the zombie alone."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    p, err, pidfile = start_restore_bg(h, images)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        fail("cryo restore waited for more than 60 s: %r" % read_text(err, ""))
    text = read_text(err, "")
    check_eq(rc, 1, "restore exit status: %r" % text)
    check(text.startswith("cryo: waiting for pid %d (still exiting) ...\n" % w.pid), "first line: %r" % text)
    me = read_text("/proc/self/comm").strip()
    want = "pid %d is still a zombie: its parent, pid %d (%s), has not reaped it" % (w.pid, os.getpid(), me)
    check(want in text, "expected %r in %r" % (want, text))
    check_eq(cryotest.pid_state(w.pid), "Z", "the original's zombie")
    h.reap_original(w)


def test_tracer_named(h):
    """A process already traced is refused, naming the tracer's pid and
    name; it runs on."""
    w = h.start_workload("sleep")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, w.pid, None, None) != 0:
        fail("PTRACE_SEIZE of pid %d: %s" % (w.pid, os.strerror(ctypes.get_errno())))
    images = h.mkdir("img")
    r = quiet_cryo(h, ["dump", "-t", str(w.pid), "-D", images])
    check_eq(r.rc, 1, "exit status of a dump of a traced process\n" + r.describe())
    me = read_text("/proc/self/comm").strip()
    want = "pid %d is traced by pid %d (%s); detach it first" % (w.pid, os.getpid(), me)
    check(want in r.stderr, "expected %r in %r" % (want, r.stderr))
    check(pid_alive(w.pid), "pid %d died" % w.pid)
    check_eq(proc_status(w.pid)["TracerPid"], str(os.getpid()), "TracerPid (still the test)")


if __name__ == "__main__":
    sys.exit(cryotest.main([
        test_success_lines,
        test_small_sizes_in_kib,
        test_quiet,
        test_exit_status,
        test_force,
        test_restore_dir_positional,
        test_wait_for_exiting_pid,
        test_wait_is_bounded,
        test_tracer_named,
    ]))
