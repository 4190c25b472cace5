#!/usr/bin/python3
"""End-to-end tests of `cryo restore` (dump + restore round trips).

Run: test_restore.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, pid_alive, proc_stat  # noqa: E402


def check_same_process(h, w, r):
    """The restored process has the original pid, comm and exe."""
    check_eq(r.pid, w.pid, "restored pid")
    st = proc_stat(r.pid)
    check(st is not None and st["state"] not in ("Z", "X"),
          "restored pid %d not running (state %s)" % (r.pid, st and st["state"]))
    exe = os.path.realpath(w.argv[0])
    check_eq(os.path.realpath("/proc/%d/exe" % r.pid), exe, "restored exe")
    return st


def dump_kill_reap(h, w, images=None):
    images = images or h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check(not os.path.exists("/proc/%d" % w.pid),
          "pid %d still exists after kill-mode dump and reap" % w.pid)
    return images


def wait_gone(h, pid, timeout=5.0):
    """Wait until no process `pid` exists (reaping our zombie if needed);
    False if a live process keeps the pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = proc_stat(pid)
        if st is None:
            return True
        if st["state"] in ("Z", "X") and st["ppid"] == os.getpid():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.02)
    return proc_stat(pid) is None


# ------------------------------------------------------------------ state.c

def kill_restore_exit(h, name):
    """Kill-mode dump of a fresh `name` workload, detached restore as the same
    process, its own check, then its orderly exit."""
    w = h.start_ready(name, verify="before dump")
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_same_process(h, w, r)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored %s exit status" % name)


def test_state_kill_detach(h):
    kill_restore_exit(h, "state")


def test_state_kill_attached(h):
    w = h.start_workload("state")
    h.wait_ready(w)
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=False, expected_pid=w.pid)
    st = check_same_process(h, w, r)
    check_eq(st["ppid"], r.cryo.pid, "parent of the restored process (attached cryo)")
    rw = w.restored(r.pid, r.cryo)
    h.verify_ok(rw, when="after attached restore")
    h.verify_ok(rw, exit=True, when="after attached restore (exit)")
    res = h.cryo_result(r)
    check_eq(res.rc, 0, "attached cryo restore exit status (the workload exited 0)\n"
             + res.describe())


def test_state_attached_exit_status(h):
    """A failing verify makes the workload exit 1: attached cryo must exit 1."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=False, expected_pid=w.pid)
    rw = w.restored(r.pid, r.cryo)
    h.verify_ok(rw, when="after attached restore")  # it runs and is fully restored
    lay = h.read_layout(w)
    # make its verify fail: write into a never-written page of its anon VMA
    cryotest.poke(r.pid, int(lay["anon_start"], 16) + 4096 * 555 + 8, b"\x01")
    line = h.verify(rw, exit=True)
    check(line.startswith("FAIL") and "odd page 555" in line,
          "verify after poking odd page 555: expected FAIL naming it, actual %s" % line)
    res = h.cryo_result(r)
    check_eq(res.rc, 1, "attached cryo restore exit status (the workload exited 1)\n"
             + res.describe())


def test_state_attached_forwards_sighup(h):
    """SIGHUP to an attached cryo restore reaches the restored process (state
    ignores SIGTERM; SIGHUP kills it), and cryo ends as it did."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=False, expected_pid=w.pid)
    rw = w.restored(r.pid, r.cryo)
    h.verify_ok(rw, when="after attached restore")
    os.kill(r.cryo.pid, signal.SIGHUP)
    res = h.cryo_result(r)
    check_eq(res.rc, -signal.SIGHUP, "attached cryo restore after SIGHUP to cryo (the restored process was "
             "sent it and died of it)\n" + res.describe())
    check(wait_gone(h, w.pid), "restored pid %d still exists after SIGHUP was forwarded" % w.pid)


def test_state_leave_running(h):
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.kill_and_reap(w)
    check(wait_gone(h, w.pid), "original pid %d still exists after kill+reap" % w.pid)
    # The original went on writing its own shared file mapping (shared.dat)
    # after the dump: a change the test expects, allowed by name (the mapping
    # is shared, the restored process sees the file as it is, as it would
    # have seen its own writes).
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=["--allow-changed", w.path("shared.dat")])
    check_same_process(h, w, r)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored state exit status")


def test_state_rewind(h):
    """One image, restored three times; each instance verifies and exits."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = dump_kill_reap(h, w)
    for i in range(3):
        # Each instance writes its shared file mapping (shared.dat) before it
        # exits: the next one is restored onto the file as the program itself
        # left it, which the test allows by name.
        extra = ["--allow-changed", w.path("shared.dat")] if i else []
        r = h.restore(images, detach=True, expected_pid=w.pid, extra=extra)
        check_same_process(h, w, r)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))
        check(wait_gone(h, w.pid), "pid %d still exists after instance %d exited" % (w.pid, i + 1))


def test_state_redump(h):
    """A restored process can be checkpointed and restored again."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after first restore")
    images2 = h.mkdir("img2")
    h.dump(rw.pid, images2)
    sig = h.wait_exit(rw)
    check(sig[0] == "signal", "restored process after kill-mode dump: expected death by signal, "
          "actual %r" % (sig,))
    r2 = h.restore(images2, detach=True, expected_pid=w.pid)
    rw2 = w.restored(r2.pid)
    h.verify_ok(rw2, when="after second restore")
    h.verify_ok(rw2, exit=True, when="after second restore (exit)")
    check_eq(h.wait_exit(rw2), ("exit", 0), "exit status after second restore")


def test_restore_pid_in_use(h):
    """Restoring while the original still runs must fail and not disturb it."""
    w = h.start_workload("state")
    h.wait_ready(w)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    res = h.restore(images, detach=True, expect_ok=False)
    check(not isinstance(res, cryotest.Restored),
          "restore succeeded although pid %d is in use (restored pid %s)"
          % (w.pid, getattr(res, "pid", "?")))
    check(res.rc != 0, "restore exit status: expected non-zero")
    check(res.message, "restore failed without an error message\n" + res.describe())
    st = proc_stat(w.pid)
    check(st is not None and st["state"] in ("R", "S") and st["comm"] == "state",
          "original pid %d disturbed by the failed restore: %r" % (w.pid, st))
    h.verify_ok(w, exit=True, when="of the original after the failed restore")
    check_eq(h.wait_exit(w), ("exit", 0), "original exit status")


# ------------------------------------------------------------------ others

def read_counts(w):
    counts = []
    for line in w.stdout().splitlines():
        parts = line.split()
        check(len(parts) == 2 and parts[0] == "count" and parts[1].isdigit(),
              "counter stdout: unexpected line %r" % line)
        counts.append(int(parts[1]))
    return counts


def test_counter_continues(h):
    w = h.start_workload("counter")
    h.wait_ready(w)
    time.sleep(0.7)
    h.verify_ok(w, when="before dump")
    images = dump_kill_reap(h, w)
    at_dump = read_counts(w)
    check(at_dump and at_dump[-1] >= 2, "counter printed too little before the dump: %r" % at_dump)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_same_process(h, w, r)
    rw = w.restored(r.pid)
    time.sleep(1.0)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "counter exit status")
    counts = read_counts(w)
    check_eq(counts, list(range(1, len(counts) + 1)),
             "stdout lines: count 1..N without gaps or repeats (restored file offset)")
    check(counts[-1] >= at_dump[-1] + 2,
          "counter did not continue after restore: %d at dump, %d at the end"
          % (at_dump[-1], counts[-1]))


def avx512_run(h, w, restored_pid=None):
    pid = restored_pid or w.pid
    try:
        os.unlink(w.path("result"))
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not os.path.exists(w.path("result")):
        if time.monotonic() > deadline:
            fail("avx512 pid %d: no result 10s after SIGUSR1 (state %s)"
                 % (pid, cryotest.pid_state(pid)))
        time.sleep(0.01)
    status = h.wait_exit(w if restored_pid is None else pid)
    line = cryotest.read_text(w.path("result"), "").strip()
    check(line.startswith("OK "), "avx512 result: %s" % line)
    check_eq(status, ("exit", 0), "avx512 exit status")
    return line


def test_avx512(h):
    # baseline without checkpoint: the workload itself works here
    b = h.start_workload("avx512")
    h.wait_ready(b)
    time.sleep(0.2)
    avx512_run(h, b)

    w = h.start_workload("avx512")
    h.wait_ready(w)
    time.sleep(0.3)  # let it enter the spin loop with the registers loaded
    check_eq(cryotest.pid_state(w.pid), "R", "avx512 spinning state")
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_same_process(h, w, r)
    time.sleep(0.3)
    check(pid_alive(r.pid), "restored avx512 died (state %s)" % cryotest.pid_state(r.pid))
    avx512_run(h, w, restored_pid=r.pid)


def test_sleeper_detach(h):
    w = h.start_workload("sleep")
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_same_process(h, w, r)
    time.sleep(1.0)
    st = proc_stat(r.pid)
    check(st is not None, "restored sleep pid %d gone after 1 s" % r.pid)
    check_eq((st["state"], st["comm"]), ("S", "sleep"), "restored sleep state/comm after 1 s")
    os.kill(r.pid, signal.SIGTERM)
    check_eq(h.wait_exit(r.pid), ("signal", signal.SIGTERM), "restored sleep death")


def test_sleeper_attached(h):
    w = h.start_workload("sleep")
    images = dump_kill_reap(h, w)
    r = h.restore(images, detach=False, expected_pid=w.pid)
    check_same_process(h, w, r)
    time.sleep(1.0)
    st = proc_stat(r.pid)
    check(st is not None, "restored sleep pid %d gone after 1 s" % r.pid)
    check_eq((st["state"], st["comm"]), ("S", "sleep"), "restored sleep state/comm after 1 s")
    os.kill(r.pid, signal.SIGTERM)
    res = h.cryo_result(r)
    check_eq(res.rc, -signal.SIGTERM,
             "attached cryo restore status (restored process died by SIGTERM)\n" + res.describe())


def test_loop_py(h):
    kill_restore_exit(h, "loop.py")


# ------------------------------------------------------------------ corrupted images

def image_files(images):
    out = []
    for root, _, files in os.walk(images):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(os.path.relpath(p, images))
    return sorted(out)


def corrupted_restores(h, mutate, what, detach):
    w = h.start_workload("sleep")
    pristine = dump_kill_reap(h, w)
    files = image_files(pristine)
    sized = [f for f in files if os.path.getsize(os.path.join(pristine, f)) > 0]
    check(sized, "image %s has no non-empty file (%r)" % (pristine, files))
    if len(sized) < len(files):
        h.note("%d empty image file(s) cannot be %s: %s"
               % (len(files) - len(sized), what, sorted(set(files) - set(sized))))
    problems = []
    for f in sized:
        copy = h.mkdir("corrupt")
        shutil.rmtree(copy)
        shutil.copytree(pristine, copy, symlinks=True)
        desc = mutate(os.path.join(copy, f))
        try:
            res = h.restore(copy, detach=detach, expect_ok=False, expected_pid=w.pid)
        except cryotest.TestFailure as e:
            problems.append("%s (%s): %s" % (f, desc, str(e).splitlines()[0]))
            h.cleanup_one(w.pid)
            continue
        if isinstance(res, cryotest.Restored):
            problems.append("%s (%s): restore succeeded (pid %d running)" % (f, desc, res.pid))
            h.cleanup_one(res.pid)
        elif res.rc == 0:
            problems.append("%s (%s): cryo exited 0" % (f, desc))
        elif not res.message:
            problems.append("%s (%s): exit status %s but no error message on stderr"
                            % (f, desc, res.rc))
        if not wait_gone(h, w.pid):
            st = proc_stat(w.pid)
            problems.append("%s (%s): a process with pid %d is left (state %s, parent %d)"
                            % (f, desc, w.pid, st["state"], st["ppid"]))
            h.cleanup_one(w.pid)
    check(not problems, "%d of %d %s image files were accepted or mishandled:\n  %s"
          % (len(problems), len(sized), what, "\n  ".join(problems)))
    # control: the pristine image restores fine, so the failures above were
    # caused by the corruption
    r = h.restore(pristine, detach=True, expected_pid=w.pid)
    os.kill(r.pid, signal.SIGTERM)
    check_eq(h.wait_exit(r.pid), ("signal", signal.SIGTERM), "pristine restored sleep death")
    h.note("%d image files %s, each rejected" % (len(sized), what))


def test_non_utf8_names(h):
    """A file and a cwd whose names are not UTF-8 (Linux names are bytes):
    the image holds them as they are and the restore reopens them."""
    w = h.start("py", [cryotest.PYTHON, "-c", (
        "import os, time\n"
        "os.mkdir(b'\\xff-dir'); os.chdir(b'\\xff-dir')\n"
        "fd = os.open(b'\\xfe\\xff.dat', os.O_RDWR | os.O_CREAT, 0o600)\n"
        "os.write(fd, b'0123456789'); os.lseek(fd, 3, 0); os.dup2(fd, 9)\n"
        "open('ready', 'w').write(str(os.getpid()))\n"
        "while True: time.sleep(0.05)\n")])
    ready = os.path.join(w.ctl, b"\xff-dir".decode("utf-8", "surrogateescape"), "ready")
    deadline = time.monotonic() + 10
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(os.path.exists(ready), "the python workload did not start")
    link = os.readlink(b"/proc/%d/fd/9" % w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    r = h.run_cryo(["show", images], log=False, tag="show")
    check_eq(r.rc, 0, "cryo show of an image with non-UTF-8 names\n" + r.describe())
    rs = h.restore(images, detach=True, expected_pid=w.pid)
    check_eq(os.readlink(b"/proc/%d/fd/9" % rs.pid), link, "fd 9 after restore")
    check_eq(os.readlink(b"/proc/%d/cwd" % rs.pid), os.path.dirname(link), "cwd after restore")
    with open("/proc/%d/fdinfo/9" % rs.pid) as f:
        check("pos:\t3" in f.read(), "fd 9 offset after restore")
    h.cleanup_one(rs.pid)


def test_corrupt_flipped_byte(h):
    def flip(path):
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        return "byte %d of %d flipped" % (size // 2, size)
    corrupted_restores(h, flip, "byte-flipped", detach=True)


def test_corrupt_truncated(h):
    def truncate(path):
        size = os.path.getsize(path)
        os.truncate(path, size // 2)
        return "truncated from %d to %d bytes" % (size, size // 2)
    corrupted_restores(h, truncate, "truncated", detach=False)


TESTS = [
    test_state_kill_detach,
    test_state_kill_attached,
    test_state_attached_exit_status,
    test_state_attached_forwards_sighup,
    test_state_leave_running,
    test_state_rewind,
    test_state_redump,
    test_restore_pid_in_use,
    test_counter_continues,
    test_avx512,
    test_sleeper_detach,
    test_sleeper_attached,
    test_loop_py,
    test_non_utf8_names,
    test_corrupt_flipped_byte,
    test_corrupt_truncated,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
