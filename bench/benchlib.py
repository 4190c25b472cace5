"""benchlib: shared plumbing of cryo's benchmarks (bench_dump.py, bench_restore.py).

Rules every benchmark follows (see bench/README.md):
  - the benchmark process is a child subreaper (prctl PR_SET_CHILD_SUBREAPER),
    so a process restored with `cryo restore --detach` is reparented to it and
    can be reaped by pid;
  - every process it starts or restores is killed (SIGKILL, by pid, only while
    it is still our descendant) and reaped, also on errors, SIGINT/SIGTERM and
    the global deadline;
  - every wait is bounded;
  - temporary files live in one /tmp/cryo-bench-* directory, removed at the
    end unless --keep is given.
"""
import argparse
import ctypes
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CRYO_TIMEOUT = 120.0


class BenchError(Exception):
    """A benchmark step failed (message says which command and why)."""


class BenchAbort(BaseException):
    """Interrupted by a signal or the global deadline."""


# ---------------------------------------------------------------- small helpers

def read_text(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def proc_stat(pid):
    s = read_text("/proc/%d/stat" % pid)
    if s is None:
        return None
    rp = s.rfind(")")
    rest = s[rp + 2:].split()
    return {"state": rest[0], "ppid": int(rest[1]), "comm": s[s.find("(") + 1:rp]}


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st["state"] not in ("Z", "X")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x):
    """Seconds, human-readable."""
    if x != x:
        return "n/a"
    return "%.1f ms" % (x * 1e3) if x < 1.0 else "%.3f s" % x


def dir_bytes(path):
    total = 0
    for name in os.listdir(path):
        total += os.path.getsize(os.path.join(path, name))
    return total


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


def inheritable_fds():
    """Our fds without close-on-exec."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if os.get_inheritable(fd):
                out.append(fd)
        except OSError:
            pass  # the fd of the listdir itself, already closed
    return out


def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]), idle


def cpu_busy(window=0.5):
    """Fraction of all CPUs busy over `window` seconds (0..1)."""
    t0, i0 = _cpu_times()
    time.sleep(window)
    t1, i1 = _cpu_times()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_wait, threshold=0.15, window=0.5):
    """Wait (at most max_wait s) until the machine is quiet: other work (other
    users' builds and tests share these cores) skews timings.  Returns the last
    busy fraction measured."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy(window)
        if busy <= threshold or time.monotonic() >= deadline:
            return busy


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_CHILD_SUBREAPER): %s" % os.strerror(e))


def find_binary(explicit, rel, what):
    """explicit path, else the first of build-bench/ and build/ that has rel."""
    if explicit:
        cands = [explicit]
    else:
        cands = [os.path.join(ROOT, b, rel) for b in ("build-bench", "build")]
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise BenchError("%s not found (tried %s); build it first: cmake -S %s -B %s/build-bench "
                     "-G Ninja && ninja -C %s/build-bench" % (what, ", ".join(cands), ROOT, ROOT, ROOT))


def tree_pids(root):
    """The pids of root and all its descendants (zombies included), from
    /proc/PID/task/TID/children."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if proc_stat(pid) is None:
            continue
        out.append(pid)
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            kids = read_text("/proc/%d/task/%s/children" % (pid, tid), "") or ""
            todo.extend(int(k) for k in kids.split())
    return sorted(out)


def parse_kv(line):
    return {k: v for k, v in (tok.split("=", 1) for tok in line.split() if "=" in tok)}


LOG_RE = re.compile(r"^(\d+\.\d+) (\d+) (\w+)\s+(.*)$")


def log_events(path):
    """[(timestamp, level, message)] of a cryo --log-file."""
    out = []
    for line in (read_text(path, "") or "").splitlines():
        m = LOG_RE.match(line)
        if m:
            out.append((float(m.group(1)), m.group(3), m.group(4)))
    return out


def log_ms(path, pattern):
    """The first '<number> ms' captured by regex `pattern` in a cryo log, or None."""
    rx = re.compile(pattern)
    for _, _, msg in log_events(path):
        m = rx.search(msg)
        if m:
            return float(m.group(1))
    return None


# ---------------------------------------------------------------- the bench context

class Bench:
    """Owns the temp dir and every process the benchmark starts."""

    def __init__(self, args):
        self.args = args
        self.cryo = find_binary(args.cryo, "src/cli/cryo", "cryo")
        self.memtouch = find_binary(args.memtouch, "bench/memtouch", "memtouch")
        self.tmp = tempfile.mkdtemp(prefix="cryo-bench-", dir="/tmp")
        self.n = 0
        self.popens = {}      # pid -> Popen we spawned (memtouch originals)
        self.tracked = set()  # every pid we started or restored
        self.baseline = None

    # -- paths
    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def fresh_dir(self, name):
        self.n += 1
        d = self.path("%03d-%s" % (self.n, name))
        os.makedirs(d)
        return d

    # -- the C baseline helper, compiled on demand (not part of the CMake build)
    def baseline_io(self):
        if self.baseline is None:
            src = os.path.join(HERE, "baseline_io.c")
            out = self.path("baseline_io")
            cc = os.environ.get("CC", "cc")
            r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, src],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise BenchError("compiling %s failed:\n%s" % (src, r.stderr))
            self.baseline = out
        return self.baseline

    def run_baseline(self, argv, timeout=300.0):
        r = subprocess.run([self.baseline_io()] + argv, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout, close_fds=True)
        if r.returncode != 0:
            raise BenchError("baseline_io %s failed (status %d): %s"
                             % (" ".join(argv), r.returncode, r.stderr.strip()))
        return parse_kv(r.stdout.strip().splitlines()[-1])

    def warm(self):
        """Touch and free --warm-mib MiB right before a timed step (README:
        "Warm memory")."""
        mib = getattr(self.args, "warm_mib", 0)
        if mib > 0:
            self.run_baseline(["warm", str(mib)])

    def run_baseline_staged(self, argv, prepare, timeout=300.0):
        """Run `baseline_io ARGV --wait-go`: wait until it has filled its buffer,
        call prepare(), then let it run the timed part."""
        p = subprocess.Popen([self.baseline_io()] + argv + ["--wait-go"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        self.popens[p.pid] = p
        self.tracked.add(p.pid)
        try:
            ready, _, _ = select.select([p.stdout], [], [], timeout)
            line = p.stdout.readline().decode() if ready else ""
            if line.strip() != "filled":
                raise BenchError("baseline_io %s: expected 'filled', got %r (status %s): %s"
                                 % (" ".join(argv), line, p.poll(),
                                    p.stderr.read().decode().strip() if p.poll() is not None else ""))
            prepare()
            out, err = p.communicate(b"g", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError("baseline_io %s: no exit within %.0f s" % (" ".join(argv), timeout))
        finally:
            self.kill(p.pid)
        if p.returncode != 0:
            raise BenchError("baseline_io %s failed (status %s): %s"
                             % (" ".join(argv), p.returncode, err.decode().strip()))
        return parse_kv(out.decode().strip().splitlines()[-1])

    # -- workloads (the control-file protocol of memtouch and tests/workloads)
    def start_ready(self, make_argv, what, timeout=120.0):
        """Start make_argv(ctl) in a fresh control dir ctl (its cwd, a new
        session, stdin /dev/null, stderr to ctl/stderr); wait for ctl/ready to
        name its pid.  Returns (pid, ctl, seconds until ready)."""
        ctl = self.fresh_dir("ctl")
        t0 = time.monotonic()
        with open(os.path.join(ctl, "stderr"), "wb") as err:
            p = subprocess.Popen(make_argv(ctl), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err, cwd=ctl,
                                 start_new_session=True, close_fds=True)
        self.popens[p.pid] = p
        self.tracked.add(p.pid)
        ready = os.path.join(ctl, "ready")
        deadline = t0 + timeout
        while True:
            txt = read_text(ready)
            if txt and txt.strip():
                if int(txt.strip()) != p.pid:
                    raise BenchError("%s ready file names pid %s, expected %d" % (what, txt.strip(), p.pid))
                return p.pid, ctl, time.monotonic() - t0
            if p.poll() is not None:
                raise BenchError("%s exited with status %s before ready: %s"
                                 % (what, p.returncode, (read_text(os.path.join(ctl, "stderr"), "") or "").strip()))
            if time.monotonic() > deadline:
                raise BenchError("%s (pid %d) not ready within %.0f s" % (what, p.pid, timeout))
            time.sleep(0.005)

    def start_memtouch(self, mib, timeout=120.0, huge=None):
        """Start memtouch with MIB MiB (in transparent huge pages with `huge`:
        "huge" by MADV_HUGEPAGE, "collapse" by MADV_COLLAPSE); wait for
        `ready`. Returns (pid, ctl, seconds until ready)."""
        extra = [huge] if huge else []
        return self.start_ready(lambda ctl: [self.memtouch, ctl, str(mib)] + extra,
                                "memtouch %d MiB%s" % (mib, " " + huge if huge else ""), timeout)

    def verify(self, pid, ctl, timeout=60.0):
        """Ask memtouch to check its pages; returns the result line (raises on FAIL)."""
        result = os.path.join(ctl, "result")
        if os.path.exists(result):
            os.unlink(result)
        tmp = os.path.join(ctl, "verify.tmp")
        with open(tmp, "w") as f:
            f.write("check\n")
        os.rename(tmp, os.path.join(ctl, "verify"))
        deadline = time.monotonic() + timeout
        while True:
            txt = read_text(result)
            if txt is not None and txt.endswith("\n"):
                txt = txt.strip()
                if not txt.startswith("OK"):
                    raise BenchError("restored pid %d failed verification: %s" % (pid, txt))
                return txt
            if not pid_alive(pid):
                raise BenchError("pid %d died before answering verify (state %s)"
                                 % (pid, (proc_stat(pid) or {}).get("state")))
            if time.monotonic() > deadline:
                raise BenchError("pid %d: no verify result within %.0f s" % (pid, timeout))
            time.sleep(0.005)

    def wait_running(self, pid, timeout=10.0):
        """Wait until pid is alive, not stopped/traced, and our child (subreaper)."""
        deadline = time.monotonic() + timeout
        while True:
            st = proc_stat(pid)
            if st and st["state"] in ("S", "R", "D") and st["ppid"] == os.getpid():
                return
            if st is None or st["state"] in ("Z", "X"):
                raise BenchError("restored pid %d is gone (state %s)" % (pid, st and st["state"]))
            if time.monotonic() > deadline:
                raise BenchError("restored pid %d not running as our child within %.0f s (state %s, ppid %d)"
                                 % (pid, timeout, st["state"], st["ppid"]))
            time.sleep(0.002)

    # -- cryo
    def run_cryo(self, argv, log, timeout=CRYO_TIMEOUT):
        """Run cryo ARGV --log-file LOG.  Returns (rc, wall seconds, ru_maxrss KiB,
        stderr).  The wall time is spawn to reap of the cryo process (through
        `baseline_io rusage`, which forks it from a small process: a child
        forked from Python would count the interpreter in its ru_maxrss)."""
        err_path = log + ".stderr"
        rss_path = log + ".rusage"
        full = [self.baseline_io(), "rusage", rss_path, self.cryo] + argv + ["--log-file", log]
        with open(err_path, "wb") as err:
            t0 = time.monotonic()
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, close_fds=True)
            # A pidfd becomes readable the moment cryo exits: precise wall time
            # without busy polling, and a bounded wait.
            pidfd = os.pidfd_open(p.pid)
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(timeout * 1000):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    os.wait4(p.pid, 0)
                    p.returncode = -9
                    raise BenchError("cryo %s: no exit within %.0f s (killed)" % (" ".join(argv), timeout))
                wall = time.monotonic() - t0
            finally:
                os.close(pidfd)
            _, status, _ = os.wait4(p.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = -(rc - 128) if rc > 128 else rc  # cryo killed by a signal: negative, as from Popen
        kv = parse_kv(read_text(rss_path, "") or "")
        if "maxrss_kib" not in kv:
            raise BenchError("cryo %s: no rusage from baseline_io (status %d): %s"
                             % (" ".join(argv), rc, read_text(err_path, "")))
        return p.returncode, wall, int(kv["maxrss_kib"]), read_text(err_path, "")

    def cryo_or_fail(self, argv, log, timeout=CRYO_TIMEOUT):
        rc, wall, rss, err = self.run_cryo(argv, log, timeout)
        if rc != 0:
            tail = "\n".join((read_text(log, "") or "").splitlines()[-20:])
            raise BenchError("command failed (exit status %d):\n  %s\n--- stderr ---\n%s\n--- log tail ---\n%s"
                             % (rc, " ".join([self.cryo] + argv + ["--log-file", log]),
                                err.strip() or "(empty)", tail or "(empty)"))
        return wall, rss

    # -- process cleanup
    def _is_ours(self, pid):
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

    def reap(self, pid, timeout=10.0):
        """Wait (bounded) until pid is gone, reaping it if it is our child."""
        p = self.popens.pop(pid, None)
        deadline = time.monotonic() + timeout
        while True:
            st = proc_stat(pid)
            if st is None:
                break
            if st["ppid"] == os.getpid():
                try:
                    r, status = os.waitpid(pid, os.WNOHANG)
                    if r == pid and p is not None:
                        p.returncode = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    pass
            elif not self._is_ours(pid):
                break
            if time.monotonic() > deadline:
                raise BenchError("pid %d (state %s, parent %d) not reaped within %.0f s"
                                 % (pid, st["state"], st["ppid"], timeout))
            time.sleep(0.002)
        self.tracked.discard(pid)

    def kill(self, pid, timeout=10.0):
        """SIGKILL pid (only if it is our descendant) and reap it."""
        if pid_alive(pid) and self._is_ours(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap(pid, timeout)

    def kill_all(self, pids, timeout=10.0):
        """SIGKILL every pid of `pids` that is our descendant, then reap them all
        (orphans come to us: we are a child subreaper)."""
        for pid in pids:
            if pid_alive(pid) and self._is_ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in pids:
            self.reap(pid, timeout)

    def wait_gone(self, pids, timeout=20.0):
        """Wait (bounded) until none of `pids` exists, reaping those that are
        our zombie children (the orphans of a tree cryo killed)."""
        deadline = time.monotonic() + timeout
        left = set(pids)
        while left:
            for pid in list(left):
                st = proc_stat(pid)
                if st is None:
                    left.discard(pid)
                    self.tracked.discard(pid)
                    self.popens.pop(pid, None)
                elif st["state"] == "Z" and st["ppid"] == os.getpid():
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
            if left and time.monotonic() > deadline:
                raise BenchError("pids %s still exist %.0f s after the dump killed them"
                                 % (sorted(left)[:10], timeout))
            time.sleep(0.002)

    def reap_stray_zombies(self):
        me = os.getpid()
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = proc_stat(int(name))
                if st and st["ppid"] == me and st["state"] == "Z":
                    try:
                        os.waitpid(int(name), os.WNOHANG)
                    except ChildProcessError:
                        pass

    def _descendants(self, pid):
        out, todo = [], [pid]
        while todo:
            cur = todo.pop()
            try:
                tids = os.listdir("/proc/%d/task" % cur)
            except OSError:
                continue
            for tid in tids:
                try:
                    with open("/proc/%d/task/%s/children" % (cur, tid)) as f:
                        kids = [int(k) for k in f.read().split()]
                except OSError:
                    kids = []
                out += kids
                todo += kids
        return out

    def cleanup(self):
        problems = []
        # A run that failed half-way may leave the children of a tree it
        # started: they go too (by pid, our descendants only), and whatever was
        # orphaned to us (we are a subreaper).
        me = os.getpid()
        for pid in sorted(self.tracked):
            if pid_alive(pid) and self._is_ours(pid):
                for d in self._descendants(pid):
                    try:
                        os.kill(d, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = proc_stat(int(name))
                if st and st["ppid"] == me and st["state"] != "Z" and int(name) not in self.tracked:
                    try:
                        os.kill(int(name), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for pid in sorted(self.tracked):
            try:
                self.kill(pid)
            except BenchError as e:
                problems.append(str(e))
        self.reap_stray_zombies()
        if self.args.keep:
            print("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


# ---------------------------------------------------------------- entry point

def common_args(description, warm_mib=3072):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cryo", help="cryo binary (default: build-bench/ or build/ src/cli/cryo)")
    ap.add_argument("--memtouch", help="memtouch binary (default: build-bench/ or build/ bench/memtouch)")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp/cryo-bench-* directory")
    ap.add_argument("--deadline", type=float, default=1800.0, help="abort (and clean up) after this many seconds")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each round wait up to this many seconds for the CPUs to be idle "
                         "(<= 15%% busy); the busy fraction is printed (default 60)")
    ap.add_argument("--warm-mib", type=int, default=warm_mib,
                    help="MiB of memory touched and freed right before every timed step "
                         "(default %d; 0 = off; see README)" % warm_mib)
    return ap


def run(args, body):
    """Run body(bench) with signal handling, a deadline and cleanup."""
    if os.geteuid() != 0:
        print("cryo benchmarks must run as root", file=sys.stderr)
        return 2
    set_subreaper()

    def on_signal(signo, frame):
        raise BenchAbort("got signal %d" % signo)

    def on_alarm(signo, frame):
        raise BenchAbort("deadline of %.0f s exceeded" % args.deadline)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.deadline)))
    try:
        b = Bench(args)
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    rc = 0
    try:
        print("cryo=%s memtouch=%s tmp=%s" % (b.cryo, b.memtouch, b.tmp))
        sys.stdout.flush()
        rc = body(b)
    except BenchError as e:
        print("\nBENCHMARK FAILED: %s" % e, file=sys.stderr)
        rc = 1
    except BenchAbort as e:
        print("\nBENCHMARK ABORTED: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        signal.alarm(0)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        problems = b.cleanup()
        for p in problems:
            print("cleanup problem: %s" % p, file=sys.stderr)
        if problems:
            rc = 1
    return rc
