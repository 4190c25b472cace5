"""cryotest: harness library for cryo's end-to-end tests.

Used by test_dump.py and test_restore.py:

    import cryotest
    def test_something(h):          # h is a cryotest.Harness
        w = h.start_workload("state")
        h.wait_ready(w)
        ...
    if __name__ == "__main__":
        cryotest.main([test_something, ...])

Command line of a test script:
    test_x.py --cryo PATH --workloads DIR [--keep] [--deadline S] [NAME ...]

Workload control protocol (see tests/workloads/wl_common.h): a workload gets
a control directory as argv[1]; it writes `ready` (its pid) atomically, then
polls for `verify`; on verify it writes `result` ("OK ..." / "FAIL ...") and
exits 0/1 if `verify` contained "exit".

Rules the harness enforces:
  - the harness is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
    processes restored with --detach are reparented to it and reaped by it;
  - every process a test starts or restores is killed (SIGKILL, by pid, only
    if it is still a descendant of the harness) and reaped at the end of the
    test; a process that cannot be reaped fails the test;
  - every wait is bounded; cryo itself runs with a timeout (60 s default);
  - temporary files live under /tmp/cryo-e2e-*, removed at the end unless
    --keep is given.
"""
import argparse
import ctypes
import functools
import json
import mmap
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback

PR_SET_CHILD_SUBREAPER = 36
PYTHON = "/usr/bin/python3"  # never the pyenv shim: it must be a real ELF
CRYO_TIMEOUT = 60.0
O_CLOEXEC = 0o2000000
O_LARGEFILE = 0o100000
PF_KTHREAD = 0x00200000


class TestFailure(Exception):
    """A test's expectation did not hold."""


class HarnessAbort(BaseException):
    """The harness was interrupted (signal or global deadline)."""


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, actual %r" % (what, expected, actual))


# ---------------------------------------------------------------- /proc helpers

def read_text(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def proc_stat(pid):
    """Fields of /proc/PID/stat as a dict, or None if the pid does not exist."""
    s = read_text("/proc/%d/stat" % pid)
    if s is None:
        return None
    lp, rp = s.find("("), s.rfind(")")
    rest = s[rp + 2:].split()
    return {
        "pid": int(s[:lp]),
        "comm": s[lp + 1:rp],
        "state": rest[0],
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "session": int(rest[3]),
        "flags": int(rest[6]),
        "num_threads": int(rest[17]),
    }


def pid_state(pid):
    st = proc_stat(pid)
    return st["state"] if st else None


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    st = pid_state(pid)
    return st is not None and st not in ("Z", "X")


def proc_status(pid):
    s = read_text("/proc/%d/status" % pid)
    if s is None:
        return None
    out = {}
    for line in s.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def sigset_bits(hexstr):
    """Set of signal numbers in a /proc status signal mask."""
    v = int(hexstr, 16)
    return {i + 1 for i in range(64) if v >> i & 1}


def proc_maps(pid):
    """List of VMAs of /proc/PID/maps as dicts."""
    out = []
    text = read_text("/proc/%d/maps" % pid)
    if text is None:
        fail("cannot read /proc/%d/maps" % pid)
    for line in text.splitlines():
        parts = line.split(None, 5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append({
            "start": start,
            "end": end,
            "prot": parts[1],
            "offset": int(parts[2], 16),
            "dev": parts[3],
            "inode": int(parts[4]),
            "name": parts[5].strip() if len(parts) > 5 else "",
        })
    return out


def proc_fds(pid):
    """dict fd -> {path, pos, flags (octal from fdinfo, incl. O_CLOEXEC), kind}."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        fd = int(name)
        try:
            path = os.readlink("%s/%d" % (base, fd))
            st = os.stat("%s/%d" % (base, fd))
        except OSError:
            continue
        info = {}
        for line in (read_text("/proc/%d/fdinfo/%d" % (pid, fd)) or "").splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
        if stat.S_ISREG(st.st_mode):
            kind = "regular"
        elif stat.S_ISDIR(st.st_mode):
            kind = "directory"
        elif stat.S_ISCHR(st.st_mode):
            kind = "chardev"
        else:
            kind = "other"
        out[fd] = {
            "path": path,
            "pos": int(info.get("pos", "-1")),
            "flags": int(info.get("flags", "0"), 8),
            "kind": kind,
        }
    return out


def poke(pid, addr, data):
    """Write bytes into another process's memory (root; /proc/PID/mem)."""
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
        m.seek(addr)
        check_eq(m.write(data), len(data), "bytes written to /proc/%d/mem" % pid)


def free_pid():
    """A pid that currently does not exist."""
    pid_max = int(read_text("/proc/sys/kernel/pid_max", "32768").strip())
    for pid in range(pid_max - 1, 300, -1):
        if not os.path.exists("/proc/%d" % pid):
            return pid
    fail("no free pid found")


def find_kernel_thread():
    """pid 2 if it is kthreadd, else any kernel thread visible in /proc."""
    st = proc_stat(2)
    if st and st["flags"] & PF_KTHREAD:
        return 2
    for name in sorted(os.listdir("/proc"), key=lambda s: (len(s), s)):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st["flags"] & PF_KTHREAD:
                return int(name)
    return None


@functools.lru_cache(maxsize=None)
def kernel_maps_zero_page():
    """Whether a read fault on untouched private anonymous memory maps the
    shared zero page (most kernels: such pages hold nothing to dump) or a
    page of its own (some builds: such pages are dumped like written ones).
    Two pages of two mappings read: the same frame means the zero page."""
    maps = [mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE) for _ in range(2)]
    frames = []
    with open("/proc/self/pagemap", "rb") as f:
        for m in maps:
            m[0]  # the read fault
            view = ctypes.c_char.from_buffer(m)
            f.seek(ctypes.addressof(view) // 4096 * 8)
            del view
            entry = struct.unpack("<Q", f.read(8))[0]
            frames.append(entry & ((1 << 55) - 1) if entry >> 63 else None)
    for m in maps:
        m.close()
    return frames[0] is not None and frames[0] != 0 and frames[0] == frames[1]


def check_private_image(images):
    """An image holds memory and credentials: the directory is 0700 and every
    file in it (whoever added it) a regular file of mode 0600."""
    st = os.lstat(images)
    check(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700,
          "image directory %s has mode %o, not 0700" % (images, stat.S_IMODE(st.st_mode)))
    for name in os.listdir(images):
        fst = os.lstat(os.path.join(images, name))
        if name == "pre-copy" and stat.S_ISDIR(fst.st_mode):  # the rounds of `dump --pre-copy`, images too
            check(stat.S_IMODE(fst.st_mode) == 0o700, "%s/pre-copy has mode %o" % (images, fst.st_mode))
            for r in os.listdir(os.path.join(images, name)):
                check_private_image(os.path.join(images, name, r))
            continue
        check(stat.S_ISREG(fst.st_mode) and stat.S_IMODE(fst.st_mode) == 0o600,
              "image file %s/%s is not a regular file of mode 0600 (mode %o)" % (images, name, fst.st_mode))


# ---------------------------------------------------------------- data types

def wait_pids_gone(pids, timeout=10.0):
    """Reap our zombie children among `pids` (orphans of a killed tree come to
    the harness, a subreaper) until none of them exists."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            st = proc_stat(pid)
            if st is None:
                left.remove(pid)
            elif st["state"] == "Z" and st["ppid"] == os.getpid():
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.01)
    check(not left, "pids %s of the dumped tree still exist" % left)


class Workload:
    """A process driven through a control directory."""

    def __init__(self, name, ctl, pid, popen=None, argv=None):
        self.name = name
        self.ctl = ctl
        self.pid = pid
        self.popen = popen    # set when the harness started it (original)
        self.argv = argv
        self.cryo = None      # attached `cryo restore` Popen of a restored instance

    def path(self, name):
        return os.path.join(self.ctl, name)

    def stdout(self):
        return read_text(self.path("stdout"), "")

    def stderr(self):
        return read_text(self.path("stderr"), "")

    def restored(self, pid, cryo=None):
        """Handle for a restored instance of this workload."""
        w = Workload(self.name, self.ctl, pid, None, self.argv)
        w.cryo = cryo
        return w

    def __repr__(self):
        return "<%s pid %d>" % (self.name, self.pid)


class CryoResult:
    def __init__(self, argv, rc, stdout, stderr, log):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.log = log

    @property
    def message(self):
        return (self.stderr or "").strip()

    def describe(self, log_lines=60):
        s = "cryo %s -> exit status %s\n" % (" ".join(self.argv), self.rc)
        s += "--- cryo stderr ---\n%s\n" % (self.stderr.rstrip() or "(empty)")
        if self.stdout.strip():
            s += "--- cryo stdout ---\n%s\n" % self.stdout.rstrip()
        if self.log is not None:
            lines = self.log.rstrip().splitlines()
            if len(lines) > log_lines:
                lines = ["... (%d lines omitted)" % (len(lines) - log_lines)] + lines[-log_lines:]
            s += "--- cryo log ---\n%s\n" % ("\n".join(lines) or "(empty)")
        return s


class Restored:
    """A restore: pid of the restored process; cryo is the Popen of the
    attached `cryo restore` (None with --detach)."""

    def __init__(self, pid, cryo, result):
        self.pid = pid
        self.cryo = cryo
        self.result = result


# ---------------------------------------------------------------- harness

class Harness:
    def __init__(self, cryo, workloads, tmp_root):
        self.cryo = cryo
        self.workloads = workloads
        self.tmp_root = tmp_root
        self.counter = 0
        self.notes = []
        self._reset_tracking()

    def _reset_tracking(self):
        self.tracked_pids = []    # started or restored pids (not cryo itself)
        self.popens = {}          # pid -> Popen for processes we spawned
        self.cryo_popens = []     # attached `cryo restore` processes

    def note(self, msg):
        self.notes.append(msg)

    # -- paths
    def mkdir(self, name):
        self.counter += 1
        d = os.path.join(self.tmp_root, "%03d-%s" % (self.counter, name))
        os.makedirs(d)
        return d

    def workload_path(self, name):
        return os.path.join(self.workloads, name)

    # -- starting workloads
    def start(self, name, argv, ctl=None):
        """Start argv in its own session with stdin /dev/null and stdout /
        stderr going to files in a fresh control dir (cwd = control dir)."""
        if ctl is None:
            ctl = self.mkdir(name)
        exe = argv[0]
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            fail("workload executable not found: %s (is --workloads right and built?)" % exe)
        # Opened for appending (a shell's >>): a log a program only appends to
        # may grow after a --leave-running dump without the restore refusing
        # it as changed (a rewind beside the original that goes on printing).
        with open(os.path.join(ctl, "stdout"), "ab") as out, \
                open(os.path.join(ctl, "stderr"), "ab") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 cwd=ctl, start_new_session=True, close_fds=True)
        self.tracked_pids.append(p.pid)
        self.popens[p.pid] = p
        return Workload(name, ctl, p.pid, p, argv)

    def start_under_unshare(self, name, argv, ctl):
        """Start argv (an `unshare ... --fork` command line) and wait, at most
        20 s, for the workload it forks to write its pid into CTL/ready:
        (unshare's Workload, the forked workload's Workload)."""
        u = self.start(name, argv, ctl)
        deadline = time.monotonic() + 20
        while not (read_text(os.path.join(ctl, "ready")) or "").strip():
            if time.monotonic() > deadline or not pid_alive(u.pid):
                fail("the workload under unshare did not get ready: %s" % u.stderr())
            time.sleep(0.01)
        child = int(read_text(os.path.join(ctl, "ready")).strip())
        self.tracked_pids.append(child)
        return u, Workload(name, ctl, child, None, u.argv)

    def start_workload(self, name, *args):
        """Start a workload by name: a C workload from --workloads, "loop.py"
        (run with /usr/bin/python3) or "sleep" (/bin/sleep 1000)."""
        if name == "sleep":
            w = self.start("sleep", ["/bin/sleep", "1000"])
            self.wait_state(w.pid, "S", comm="sleep")
            return w
        ctl = self.mkdir(name.replace(".", "_"))
        if name.endswith(".py"):
            script = self.workload_path(name)
            if not os.path.isfile(script):
                fail("workload script not found: %s" % script)
            return self.start(name, [PYTHON, script, ctl] + list(args), ctl)
        return self.start(name, [self.workload_path(name), ctl] + list(args), ctl)

    def start_ready(self, name, *args, timeout=20.0, verify=None):
        """start_workload + wait_ready; with verify="when", the workload's
        own check too (verify_ok)."""
        w = self.start_workload(name, *args)
        self.wait_ready(w, timeout=timeout)
        if verify:
            self.verify_ok(w, when=verify, timeout=max(timeout, 20.0))
        return w

    def wait_state(self, pid, state, comm=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            st = proc_stat(pid)
            if st and st["state"] == state and (comm is None or st["comm"] == comm):
                return st
            if st is None or st["state"] in ("Z", "X"):
                fail("pid %d exited while waiting for state %s" % (pid, state))
            if time.monotonic() > deadline:
                fail("pid %d: expected state %s comm %s within %.0fs, actual state %s comm %s"
                     % (pid, state, comm, timeout, st["state"], st["comm"]))
            time.sleep(0.01)

    def wait_ready(self, w, timeout=20.0):
        """Wait for <ctl>/ready and check it names w.pid."""
        path = w.path("ready")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            txt = read_text(path)
            if txt is not None and txt.strip():
                check_eq(int(txt.strip()), w.pid, "%s: pid in ready file" % w.name)
                return
            if not pid_alive(w.pid):
                rc = w.popen.poll() if w.popen else None
                fail("%s (pid %d) exited before ready (status %s); stderr: %s"
                     % (w.name, w.pid, rc, w.stderr().strip()[-2000:] or "(empty)"))
            time.sleep(0.01)
        fail("%s (pid %d) not ready within %.0fs; stderr: %s"
             % (w.name, w.pid, timeout, w.stderr().strip()[-2000:] or "(empty)"))

    def read_layout(self, w):
        """Parse <ctl>/layout (state workload): dict key -> value string;
        'fd' lines are collected in a list."""
        out = {"fd": []}
        for line in (read_text(w.path("layout")) or "").splitlines():
            k, _, v = line.partition(" ")
            if k == "fd":
                out["fd"].append(v)
            else:
                out[k] = v
        check(len(out) > 1, "%s: no layout file" % w.name)
        return out

    def verify(self, w, exit=False, timeout=20.0):
        """Ask the workload to verify; returns the result line."""
        result = w.path("result")
        try:
            os.unlink(result)
        except FileNotFoundError:
            pass
        tmp = w.path("verify.tmp")
        with open(tmp, "w") as f:
            f.write("exit\n" if exit else "check\n")
        os.rename(tmp, w.path("verify"))
        deadline = time.monotonic() + timeout
        while True:
            txt = read_text(result)
            if txt is not None and txt.endswith("\n"):
                return txt.strip()
            if not pid_alive(w.pid):
                time.sleep(0.05)
                txt = read_text(result)
                if txt is not None and txt.strip():
                    return txt.strip()
                fail("%s (pid %d, state %s) died before writing a result; stderr: %s"
                     % (w.name, w.pid, pid_state(w.pid), w.stderr().strip()[-2000:] or "(empty)"))
            if time.monotonic() > deadline:
                fail("%s (pid %d, state %s): no result within %.0fs (verify file %s)"
                     % (w.name, w.pid, pid_state(w.pid), timeout,
                        "still present" if os.path.exists(w.path("verify")) else "consumed"))
            time.sleep(0.01)

    def verify_ok(self, w, exit=False, timeout=20.0, when=""):
        line = self.verify(w, exit=exit, timeout=timeout)
        check(line.startswith("OK "), "%s verify%s: %s" % (w.name, " " + when if when else "", line))
        return line

    # -- waiting for exits
    def wait_exit(self, w_or_pid, timeout=15.0):
        """Wait for a process to exit and reap it.  Returns ('exit', code)
        or ('signal', signo).  A Workload started by the harness is waited
        through its Popen; anything else (restored processes, reparented to
        the harness) with waitpid."""
        if isinstance(w_or_pid, Workload) and w_or_pid.popen is not None:
            p = w_or_pid.popen
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                fail("pid %d (state %s) did not exit within %.0fs"
                     % (p.pid, pid_state(p.pid), timeout))
            return ("signal", -rc) if rc < 0 else ("exit", rc)
        pid = w_or_pid if isinstance(w_or_pid, int) else w_or_pid.pid
        deadline = time.monotonic() + timeout
        while True:
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                st = proc_stat(pid)
                fail("pid %d is not a child of the harness (%s): cannot get its exit status"
                     % (pid, "gone" if st is None else "parent %d, state %s"
                        % (st["ppid"], st["state"])))
            if wpid == pid:
                if os.WIFSIGNALED(status):
                    return ("signal", os.WTERMSIG(status))
                return ("exit", os.WEXITSTATUS(status))
            if time.monotonic() > deadline:
                fail("pid %d (state %s) did not exit within %.0fs" % (pid, pid_state(pid), timeout))
            time.sleep(0.01)

    def reap_original(self, w, timeout=15.0):
        """Reap the harness-started original after a kill-mode dump; it must
        have been killed by a signal.  Returns the signal number."""
        check(w.popen is not None, "reap_original: %r was not started by the harness" % w)
        try:
            rc = w.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("%s (pid %d, state %s) still running %.0fs after kill-mode dump"
                 % (w.name, w.pid, pid_state(w.pid), timeout))
        check(rc < 0, "%s (pid %d) after kill-mode dump: expected death by a signal, actual "
              "exit status %d" % (w.name, w.pid, rc))
        return -rc

    def kill_and_reap(self, w, timeout=15.0):
        """SIGKILL a workload by pid and reap it."""
        if pid_alive(w.pid) and self._is_ours(w.pid):
            os.kill(w.pid, signal.SIGKILL)
        return self.wait_exit(w, timeout)

    # -- running cryo
    def run_cryo(self, args, timeout=CRYO_TIMEOUT, log=True, tag=None, env=None):
        """Run cryo to completion; returns CryoResult (never raises on a
        non-zero exit; rc is negative when cryo died by a signal).
        stdout/stderr go to files, not pipes, so a process that inherits them
        cannot make us wait.  `env`: variables added to cryo's environment."""
        if not (os.path.isfile(self.cryo) and os.access(self.cryo, os.X_OK)):
            fail("cryo binary not found or not executable: %s" % self.cryo)
        self.counter += 1
        base = os.path.join(self.tmp_root, "%03d-cryo-%s" % (self.counter, tag or args[0]))
        argv = list(args)
        if log:
            argv += ["--log-file", base + ".log", "-v"]
        with open(base + ".out", "wb") as out, open(base + ".err", "wb") as err:
            p = subprocess.Popen([self.cryo] + argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, close_fds=True,
                                 env=dict(os.environ, **env) if env else None)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            res = CryoResult(argv, "TIMEOUT", read_text(base + ".out", ""),
                             read_text(base + ".err", ""), read_text(base + ".log") if log else None)
            fail("cryo did not finish within %.0fs\n%s" % (timeout, res.describe()))
        finally:
            self.reap_orphans()
        return CryoResult(argv, rc, read_text(base + ".out", ""), read_text(base + ".err", ""),
                          read_text(base + ".log") if log else None)

    def dump(self, pid, images, leave_running=False, expect_ok=True, mkdir=True, timeout=CRYO_TIMEOUT,
             force=False, extra=()):
        """`force`: replace the image `images` holds (cryo refuses without).
        `extra`: more arguments (--ext-unix-sk, ...)."""
        if mkdir:
            os.makedirs(images, exist_ok=True)
        args = ["dump", "-t", str(pid), "-D", images]
        if leave_running:
            args.append("--leave-running")
        if force:
            args.append("--force")
        args += list(extra)
        r = self.run_cryo(args, timeout=timeout)
        if expect_ok and r.rc != 0:
            fail("dump of pid %d failed\n%s" % (pid, r.describe()))
        if r.rc == 0:
            check_private_image(images)
        return r

    def dump_refused(self, pid, must_name, extra_args=()):
        """A dump of `pid` that must be refused before anything is written:
        exit status 1, a message naming each of `must_name`, no image
        directory made, no page file written, and `pid` neither traced nor
        stopped afterwards. Returns the CryoResult."""
        self.counter += 1
        images = os.path.join(self.tmp_root, "%03d-refused-img" % self.counter)
        r = self.run_cryo(["dump", "-t", str(pid), "-D", images, "-vv"] + list(extra_args))
        check(r.rc == 1, "dump of pid %d should be refused (exit 1)\n%s" % (pid, r.describe()))
        for part in must_name:
            check(part in r.message, "the refusal should name %r: %s" % (part, r.message))
        log = r.log or ""
        check("pages written" not in log and "is dumping pid" not in log,
              "the refusal came after files were written:\n%s" % r.describe())
        check(not os.path.exists(images), "the refused dump made %s" % images)
        st = proc_status(pid)
        check(st is not None and st.get("TracerPid") == "0", "pid %d still traced after the refused dump" % pid)
        check(st["State"][0] in "SR", "pid %d left in state %r by the refused dump" % (pid, st["State"]))
        return r

    def restore(self, images, detach=True, expect_ok=True, expected_pid=None,
                timeout=CRYO_TIMEOUT, extra=(), env=None):
        """Restore from images.  On success returns Restored (pid checked
        against expected_pid, pid tracked for cleanup).  With expect_ok=False
        a failure returns the CryoResult instead of raising.  `extra`: more
        arguments (--ignore-changed-files, --allow-changed PATH, --pidns new).
        With ["--pidns", "new"] the pid is the host pid of the restored root,
        whose parent is the namespace's init (tracked too)."""
        self.counter += 1
        pidfile = os.path.join(self.tmp_root, "%03d-restore.pid" % self.counter)
        if expected_pid is not None:
            self.tracked_pids.append(expected_pid)  # whatever happens, clean it up
        args = ["restore", "-D", images, "--pidfile", pidfile] + list(extra)
        pidns = "--pidns" in extra
        if detach:
            args.append("--detach")
            r = self.run_cryo(args, timeout=timeout, env=env)
            if r.rc != 0:
                if expect_ok:
                    fail("restore from %s failed\n%s" % (images, r.describe()))
                return r
            txt = read_text(pidfile)
            if txt is None or not txt.strip().isdigit():
                fail("restore --detach succeeded but pidfile %s is %r\n%s"
                     % (pidfile, txt, r.describe()))
            pid = int(txt.strip())
            self.tracked_pids.append(pid)
            if expected_pid is not None:
                check_eq(pid, expected_pid, "restored pid (pidfile)")
            check(pid_alive(pid), "restored pid %d not running after restore --detach (state %s)"
                  % (pid, pid_state(pid)))
            st = proc_stat(pid)
            if pidns:  # its parent is the namespace's init, the harness's child
                self.tracked_pids.append(st["ppid"])
                st = proc_stat(st["ppid"])
            check_eq(st["ppid"], os.getpid(),
                     "parent of detached restored pid %d (harness is subreaper)" % pid)
            return Restored(pid, None, r)

        # attached: cryo stays the parent of the restored process
        if not (os.path.isfile(self.cryo) and os.access(self.cryo, os.X_OK)):
            fail("cryo binary not found or not executable: %s" % self.cryo)
        base = os.path.join(self.tmp_root, "%03d-cryo-restore-attached" % self.counter)
        argv = args + ["--log-file", base + ".log", "-v"]
        with open(base + ".out", "wb") as out, open(base + ".err", "wb") as err:
            p = subprocess.Popen([self.cryo] + argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, close_fds=True)
        self.cryo_popens.append(p)
        p.cryo_files = base

        def result(rc):
            return CryoResult(argv, rc, read_text(base + ".out", ""), read_text(base + ".err", ""),
                              read_text(base + ".log"))

        # cryo writes the pidfile once the process is completely restored
        # (seeing the pid alone is not enough: it exists while cryo still
        # rebuilds it)
        deadline = time.monotonic() + timeout
        while True:
            rc = p.poll()
            txt = read_text(pidfile)
            pid = None
            if txt is not None and txt.endswith("\n") and txt.strip().isdigit():
                pid = int(txt.strip())
            if pid is not None and rc is None:
                self.tracked_pids.append(pid)
                if pidns:
                    self.tracked_pids.append(proc_stat(pid)["ppid"])
                if expected_pid is not None:
                    check_eq(pid, expected_pid, "restored pid")
                return Restored(pid, p, result(None))
            if rc is not None:
                self.reap_orphans()
                if rc != 0 and not expect_ok:
                    return result(rc)
                fail("attached restore from %s: cryo exited (status %s) before the restored "
                     "process was seen running\n%s" % (images, rc, result(rc).describe()))
            if time.monotonic() > deadline:
                fail("attached restore from %s: no pidfile (restored process) within %.0fs\n%s"
                     % (images, timeout, result("still running").describe()))
            time.sleep(0.01)

    def cryo_result(self, restored, timeout=15.0):
        """Wait for an attached `cryo restore` to exit; returns CryoResult."""
        p = restored.cryo
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Say where it is stuck: its state, kernel stack and log tail.
            stack = read_text("/proc/%d/stack" % p.pid, "?")
            st = proc_stat(p.pid)
            fail("attached cryo restore (pid %d) did not exit within %.0fs (state %s, wchan %s)\n"
                 "kernel stack:\n%s\nrestored process: %r\nlog tail:\n%s"
                 % (p.pid, timeout, st and st["state"], read_text("/proc/%d/wchan" % p.pid, "?"), stack,
                    proc_stat(restored.pid),
                    "\n".join(read_text(p.cryo_files + ".log", "").splitlines()[-20:])))
        base = p.cryo_files
        return CryoResult(["restore"], rc, read_text(base + ".out", ""),
                          read_text(base + ".err", ""), read_text(base + ".log"))

    def show_json(self, images):
        r = self.run_cryo(["show", images, "--json"], log=False, tag="show")
        if r.rc != 0:
            fail("cryo show %s --json failed\n%s" % (images, r.describe()))
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            fail("cryo show --json printed invalid JSON (%s): %s" % (e, r.stdout[:2000]))

    def dump_unshared(self, u, child, leave_running=False, what="the workload"):
        """Dump of a tree started under unshare (start_under_unshare). Kill
        mode: unshare reaped, `child` (pid or Workload) seen killed by the dump.
        Leave-running: the original `child` (a Workload) verified, then ended
        with unshare. Either way the orphans are reaped and the tree's pids
        free. Returns the image directory."""
        images = self.mkdir("img")
        self.dump(u.pid, images, leave_running=leave_running)
        if leave_running:
            self.verify_ok(child, when="of the original after dump --leave-running")
            self.cleanup_one(child.pid)
            self.wait_exit(u)
        else:
            self.reap_original(u)
            check_eq(self.wait_exit(child), ("signal", 9), "%s after the kill-mode dump" % what)
        self.reap_orphans()
        return images

    def check_feature(self, images, *features):
        """The image at `images` declares every one of `features`."""
        have = self.show_json(images).get("features", [])
        for f in features:
            check(f in have, "the image lacks feature %s (it has %s)" % (f, ", ".join(have) or "none"))

    # -- cleanup
    def _is_ours(self, pid):
        """True if pid is the harness's descendant (checked up to 6 levels)."""
        me = os.getpid()
        cur = pid
        for _ in range(6):
            st = proc_stat(cur)
            if st is None:
                return False
            if st["ppid"] == me:
                return True
            if st["ppid"] <= 1:
                return False
            cur = st["ppid"]
        return False

    def _descendants(self, pid):
        """Every descendant of pid (children through /proc/PID/task/*/children)."""
        out, todo = [], [pid]
        while todo:
            cur = todo.pop()
            try:
                tids = os.listdir("/proc/%d/task" % cur)
            except OSError:
                continue
            for tid in tids:
                for k in read_text("/proc/%d/task/%s/children" % (cur, tid), "").split():
                    out.append(int(k))
                    todo.append(int(k))
        return out

    def reap_orphans(self, everything=False):
        """Reap zombie children the harness does not wait for explicitly
        (e.g. helpers of cryo reparented to us as the subreaper).  With
        everything=True also tracked ones (end of a test)."""
        me = os.getpid()
        keep = set()
        if not everything:
            keep = set(self.tracked_pids) | {p.pid for p in self.cryo_popens}
            keep |= {pid for pid, p in self.popens.items() if p.returncode is None}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in keep:
                continue
            st = proc_stat(pid)
            if st and st["ppid"] == me and st["state"] == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _reap_pid(self, pid, timeout=10.0):
        """Wait until `pid` is gone: reap it if it is our child, or wait for
        its parent (e.g. an attached cryo, our child) to reap it.  Never
        touches a pid that is not a descendant.  Returns a problem or None."""
        me = os.getpid()
        deadline = time.monotonic() + timeout
        while True:
            st = proc_stat(pid)
            if st is None:
                return None
            if st["ppid"] == me:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            elif not self._is_ours(pid):
                return None  # not ours (any more): never touch it
            if time.monotonic() > deadline:
                return ("pid %d (state %s, parent %d) not gone %.0fs after SIGKILL"
                        % (pid, st["state"], st["ppid"], timeout))
            time.sleep(0.01)

    def cleanup_one(self, pid, timeout=10.0):
        """SIGKILL one descendant pid now and reap it; fails if it survives."""
        if pid_alive(pid) and self._is_ours(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        problem = self._reap_pid(pid, timeout)
        if problem:
            fail(problem)

    def _kill_reparented(self, killed, cryos, timeout=10.0):
        """Kill what the deaths of `killed` reparent to the harness.  A process
        killed here hands its children to the nearest subreaper, the harness,
        only once it has exited: a grandchild of a process a test killed itself
        (`unshare --fork unshare --fork sleep` with only the outer one killed)
        was not our child at the first scan and outlived the harness (orphaned
        to init).  Rescans until every killed process is dead and no live
        child of ours is left (bounded); returns a list of problems."""
        me = os.getpid()
        deadline = time.monotonic() + timeout
        while True:
            if any(pid_alive(pid) and self._is_ours(pid) for pid in killed):
                if time.monotonic() > deadline:
                    return ["pids %s not dead %.0fs after SIGKILL"
                            % (sorted(p for p in killed if pid_alive(p)), timeout)]
                time.sleep(0.01)
                continue
            new = []
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in cryos:
                    st = proc_stat(int(name))
                    if st and st["ppid"] == me and st["state"] != "Z" and int(name) not in killed:
                        new += self._descendants(int(name)) + [int(name)]
            if not new:
                return []
            if time.monotonic() > deadline:
                return ["processes %s kept being reparented to the harness" % sorted(new)]
            for pid in new:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed |= set(new)

    def cleanup(self):
        """Kill (SIGKILL, by pid) and reap everything this test started or
        restored.  Returns a list of problems (processes that survived)."""
        problems = []
        pids = list(dict.fromkeys(self.tracked_pids))
        # A test that failed half-way may leave the children of what it
        # started: their whole trees go too, and whatever was orphaned to us
        # (the harness is a subreaper), but never cryo itself.
        cryos = {p.pid for p in self.cryo_popens}
        victims = []
        for pid in pids:
            if pid_alive(pid) and self._is_ours(pid):
                victims += [d for d in self._descendants(pid) if d not in cryos] + [pid]
        me = os.getpid()
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in cryos:
                st = proc_stat(int(name))
                if st and st["ppid"] == me and st["state"] != "Z":
                    victims.append(int(name))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        problems += self._kill_reparented(set(victims), cryos)
        for pid in pids:
            p = self.popens.get(pid)
            if p is not None and p.returncode is None:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append("pid %d (state %s) survived SIGKILL" % (pid, pid_state(pid)))
                    continue
            problem = self._reap_pid(pid)
            if problem:
                problems.append(problem)
        for p in self.cryo_popens:
            if p.poll() is None:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        problems.append("cryo pid %d survived SIGKILL" % p.pid)
        self.reap_orphans(everything=True)
        self._reset_tracking()
        return problems


# ---------------------------------------------------------------- test runner

def _set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_CHILD_SUBREAPER): %s" % os.strerror(e))


def main(tests, description=None):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cryo", required=True, help="path of the cryo binary")
    ap.add_argument("--workloads", required=True, help="directory of the built workloads")
    ap.add_argument("--keep", action="store_true", help="keep /tmp/cryo-e2e-* for inspection")
    ap.add_argument("--deadline", type=float, default=280.0,
                    help="abort (and clean up) after this many seconds")
    ap.add_argument("--list", action="store_true", help="list test names and exit")
    ap.add_argument("names", nargs="*", help="tests to run (default: all)")
    args = ap.parse_args()

    def tname(fn):
        return fn.__name__[5:] if fn.__name__.startswith("test_") else fn.__name__

    by_name = {tname(t): t for t in tests}
    if args.list:
        print("\n".join(by_name))
        return 0
    selected = []
    for n in args.names:
        n2 = n[5:] if n.startswith("test_") else n
        if n2 not in by_name:
            print("unknown test %r; known: %s" % (n, ", ".join(by_name)), file=sys.stderr)
            return 2
        selected.append(by_name[n2])
    if not selected:
        selected = list(tests)

    _set_subreaper()

    def on_signal(signo, frame):
        raise HarnessAbort("harness got signal %d" % signo)

    def on_alarm(signo, frame):
        raise HarnessAbort("harness deadline of %.0fs exceeded" % args.deadline)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.deadline)))

    tmp_root = tempfile.mkdtemp(prefix="cryo-e2e-", dir="/tmp")
    h = Harness(os.path.abspath(args.cryo), os.path.abspath(args.workloads), tmp_root)
    passed = failed = 0
    aborted = None
    try:
        print("cryo e2e: cryo=%s workloads=%s tmp=%s" % (h.cryo, h.workloads, tmp_root))
        sys.stdout.flush()
        for t in selected:
            name = tname(t)
            if aborted:
                print("FAIL %s: not run: %s" % (name, aborted))
                failed += 1
                continue
            h.notes = []
            t0 = time.monotonic()
            reason = None
            try:
                t(h)
            except TestFailure as e:
                reason = str(e)
            except HarnessAbort as e:
                reason = str(e)
                aborted = str(e)
            except Exception:
                reason = "exception:\n" + traceback.format_exc()
            finally:
                try:
                    problems = h.cleanup()
                except HarnessAbort as e:
                    problems = ["cleanup interrupted: %s" % e]
                    aborted = aborted or str(e)
            if problems and reason is None:
                reason = "cleanup: " + "; ".join(problems)
            elif problems:
                reason += "\ncleanup: " + "; ".join(problems)
            if reason is None:
                passed += 1
                print("PASS %s" % name)
            else:
                failed += 1
                print("FAIL %s: %s" % (name, reason))
            for n in h.notes:
                print("NOTE %s: %s" % (name, n))
            print("TIME %s: %.1fs" % (name, time.monotonic() - t0))
            sys.stdout.flush()
    finally:
        signal.alarm(0)
        # CRYO_E2E_KEEP_FAILED=1 (set by scripts/flakehunt.sh): a run with a
        # failure keeps its directory (cryo's --log-file, workload control
        # files), so a flake seen once under load can be read afterwards.
        keep_failed = os.environ.get("CRYO_E2E_KEEP_FAILED") == "1" and (failed or aborted)
        if args.keep or keep_failed:
            print("kept %s" % tmp_root)
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
