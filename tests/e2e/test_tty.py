#!/usr/bin/python3
"""End-to-end tests of terminals and real programs:

  - a tree that owns a pseudoterminal (tests/workloads/pty.c: master holder,
    a session on the slave, a foreground job, bytes in flight both ways), in
    kill, leave-running and rewind modes;
  - --shell-job: a job started by an interactive bash on one terminal is
    dumped and restored by `cryo restore --shell-job` typed into another bash
    on another terminal, and keeps working there;
  - `bash -i` itself, checkpointed and restored onto another terminal, still
    has its variables, cwd and job control;
  - a multi-threaded Java program that keeps counting after restore;
  - fanotify (and the other refused kinds) refused by name, the process untouched.

The test holds the master of every terminal a shell runs on, as a terminal
emulator would, and types into it.

Run: test_tty.py --cryo PATH --workloads DIR [NAME ...]
"""
import fcntl
import os
import re
import shlex
import struct
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail, proc_stat  # noqa: E402

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


class Terminal:
    """A pseudoterminal whose master the test holds and types into."""

    def __init__(self, h, rows=24, cols=80):
        self.h = h
        self.master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(self.master, TIOCSPTLCK, struct.pack("i", 0))
        self.index = struct.unpack("I", fcntl.ioctl(self.master, TIOCGPTN, b"\0" * 4))[0]
        self.path = "/dev/pts/%d" % self.index
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = b""
        h.terminals.append(self)

    def spawn(self, argv, env=None, cwd=None):
        """Start argv as a session leader with this terminal as its
        controlling terminal and stdin/stdout/stderr."""
        slave = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                 start_new_session=True, close_fds=True,
                                 preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        finally:
            os.close(slave)
        self.h.tracked_pids.append(p.pid)
        self.h.popens[p.pid] = p
        return p

    def type(self, text):
        os.write(self.master, text.encode())

    def _read_some(self, timeout):
        import select
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: nothing holds the slave any more
            time.sleep(timeout)
            return False
        self.out += data
        return True

    def expect(self, pattern, timeout=10.0, what=None):
        """Reads until `pattern` (a regex) matches output not yet consumed;
        returns the match and consumes up to its end."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out)
            if m:
                self.out = self.out[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                fail("%s: %r did not appear on %s within %.0fs; it showed: %r"
                     % (what or "terminal", pattern, self.path, timeout, self.out[-1500:]))
            self._read_some(min(left, 0.2))

    def close(self):
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def bash_env(h, prompt):
    home = h.mkdir("home")
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TERM": "dumb", "PS1": prompt, "LANG": "C",
            "INPUTRC": "/dev/null", "HISTFILE": os.path.join(home, "history")}


def start_bash(h, term, prompt, extra=()):
    p = term.spawn(["/bin/bash", "--norc", "--noprofile"] + list(extra) + ["-i"], env=bash_env(h, prompt))
    term.expect(re.escape(prompt), what="bash prompt")
    return p


def cryo_cmd(h, args, log):
    return " ".join(shlex.quote(a) for a in [h.cryo] + args + ["--log-file", log, "-v"])


def wait_file(path, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        txt = cryotest.read_text(path)
        if txt is not None and txt.endswith("\n"):
            return txt.strip()
        time.sleep(0.01)
    fail("%s: %s did not appear within %.0fs" % (what, path, timeout))


def dump_ok(h, pid, images, extra=()):
    os.makedirs(images, exist_ok=True)
    r = h.run_cryo(["dump", "-t", str(pid), "-D", images] + list(extra))
    if r.rc != 0:
        fail("dump of pid %d failed\n%s" % (pid, r.describe()))
    return r


def tree_pids(root):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if proc_stat(pid) is None:
            continue
        out.append(pid)
        for tid in os.listdir("/proc/%d/task" % pid):
            todo.extend(int(k) for k in (cryotest.read_text("/proc/%d/task/%s/children" % (pid, tid), "") or "").split())
    return out


def wait_gone(h, pids, timeout=10.0):
    """The pty tree's children die with it (SIGHUP, PDEATHSIG); orphans come to
    the harness (a subreaper) and are reaped here."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        h.reap_orphans(everything=True)
        left = [p for p in left if proc_stat(p) is not None]
        time.sleep(0.01)
    check(not left, "pids %s still exist" % left)


# ---------------------------------------------------------------- pty tree

def wait_pty_tree(root):
    """The pty workload's three pids, once it has forked them (bounded)."""
    pids = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pids = tree_pids(root)
        if len(pids) == 3:
            break
        time.sleep(0.01)
    check_eq(len(pids), 3, "processes of the pty tree %r" % pids)
    return pids


def start_pty(h):
    w = h.start_ready("pty")
    return w, wait_pty_tree(w.pid)


def check_pty_image(h, images):
    h.check_feature(images, "tty")
    img = h.show_json(images)
    check("shell-job" not in img["features"], "a pty owned by the tree needs no --shell-job: %r" % img["features"])
    ttys = img["ttys"]
    check_eq(len(ttys), 1, "terminals in the image")
    t = ttys[0]
    check_eq((t["kind"], t["rows"], t["cols"], t["exclusive"]), ("TTY_PTY", 37, 123, True), "the pty's record")
    check_eq(t["master_unread"], "child-ready\r\nhello tty\r\npartial", "bytes queued for the master")
    check_eq([(i["data"], i["partial"]) for i in t["slave_unread"]], [("hello tty\n", False), ("partial", True)],
             "input queued for the slave")
    return t


def check_pty_ok(line, when, same_index=True):
    m = re.search(r"pty index (\d+)->(\d+)", line)
    check(m is not None, "pty verify %s: %s" % (when, line))
    if same_index:
        check_eq(m.group(2), m.group(1), "pts number %s (the original is gone, so it is free)" % when)
    check("C-OK" in line, "pty verify %s: %s" % (when, line))


def test_pty_kill(h):
    w, pids = start_pty(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    wait_gone(h, pids)
    t = check_pty_image(h, images)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    check_eq(sorted(tree_pids(r.pid)), sorted(pids), "pids of the restored tree")
    h.tracked_pids.extend(pids)
    check_pty_ok(h.verify_ok(rw, when="after restore (bytes in flight)"), "after restore")
    check_pty_ok(h.verify_ok(rw, when="after restore (ping)"), "after restore")
    check_eq(cryotest.proc_stat(pids[1])["session"], pids[1], "B leads its session")
    check_eq(h.verify_ok(rw, exit=True, when="before exit").count("C-OK"), 1, "C answers")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")
    h.note("pts index in the image: %d" % t["index"])


def test_pty_leave_running(h):
    w, pids = start_pty(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    check_pty_image(h, images)
    # The original still has every byte that was in flight (read and put back).
    check_pty_ok(h.verify_ok(w, when="of the original after dump --leave-running"), "original")
    h.kill_and_reap(w)
    wait_gone(h, pids)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.tracked_pids.extend(pids)
    check_pty_ok(h.verify_ok(rw, when="after restore"), "after restore")
    h.verify_ok(rw, exit=True, when="after restore (ping, exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_pty_rewind(h):
    w, pids = start_pty(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    wait_gone(h, pids)
    for i in range(3):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.tracked_pids.extend(pids)
        check_pty_ok(h.verify_ok(rw, when="of rewind instance %d" % (i + 1)), "rewind %d" % (i + 1))
        h.verify_ok(rw, exit=True, when="of rewind instance %d (ping, exit)" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))
        wait_gone(h, pids)


# ---------------------------------------------------------------- shell jobs

def start_job(h, term, prompt):
    """An interactive bash on `term` runs the pty workload in job mode as its
    foreground job. Returns (bash Popen, job Workload)."""
    bash = start_bash(h, term, prompt)
    ctl = h.mkdir("job")
    term.type("%s %s job\n" % (shlex.quote(h.workload_path("pty")), shlex.quote(ctl)))
    pid = int(wait_file(os.path.join(ctl, "ready"), 20, "the job started by bash"))
    h.tracked_pids.append(pid)
    check_eq(proc_stat(pid)["ppid"], bash.pid, "parent of the job")
    return bash, cryotest.Workload("pty-job", ctl, pid)


def verify_job(h, w, term, exit=False, when=""):
    """The job prints job-ping N on its terminal; answer it there."""
    import threading
    errors = []

    def answer():
        try:
            m = term.expect(r"job-ping (\d+)", what="job " + when)
            term.type("job-pong %s\n" % m.group(1).decode())
        except cryotest.TestFailure as e:
            errors.append(str(e))
    t = threading.Thread(target=answer)
    t.start()
    try:
        line = h.verify(w, exit=exit)
    finally:
        t.join(15)
    check(not errors, "; ".join(errors))
    check(line.startswith("OK "), "job verify %s: %s" % (when, line))
    return line


def tty_nr_of(path):
    st = os.stat(path)
    return os.major(st.st_rdev) << 8 | (os.minor(st.st_rdev) & 0xff) | (os.minor(st.st_rdev) & ~0xff) << 12


def stat_field(pid, n):
    s = cryotest.read_text("/proc/%d/stat" % pid)
    return int(s[s.rfind(")") + 2:].split()[n - 3])


def test_pty_index_taken(h):
    """The pts number is taken by another pty at restore: the tree gets a new
    one, and every fd (master, A's slave, B's and C's terminal, C's /dev/tty)
    is on the new pair."""
    w, pids = start_pty(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    wait_gone(h, pids)
    index = h.show_json(images)["ttys"][0]["index"]
    holders, taker = [], None
    try:
        for _ in range(index + 1):
            fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            got = struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0" * 4))[0]
            if got == index:
                taker = fd
                break
            holders.append(fd)
            if got > index:
                break
    finally:
        for fd in holders:
            os.close(fd)
    check(taker is not None, "could not take /dev/pts/%d for the test" % index)
    try:
        r = h.restore(images, detach=True, expected_pid=w.pid)
        h.tracked_pids.extend(pids)
        check("/dev/pts/%d is in use: restored as" % index in r.result.stderr,
              "no warning about the pts number\n" + r.result.describe())
        rw = w.restored(r.pid)
        line = h.verify_ok(rw, when="after restore on another pts number")
        check_pty_ok(line, "after restore", same_index=False)
        check("index %d->%d" % (index, index) not in line, "the taken pts number was reused: %s" % line)
        h.verify_ok(rw, exit=True, when="after restore on another pts number (ping: ttyname)")
        check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")
    finally:
        os.close(taker)


def test_pty_slave_held_outside_refused(h):
    """The tree's pty is also held by a process outside the tree (here the
    test, through pidfd_getfd): refused, naming both; the tree runs on with
    its bytes in flight."""
    import ctypes
    w, pids = start_pty(h)
    libc = ctypes.CDLL(None, use_errno=True)
    a_slave = [fd for fd, l in fd_links(w.pid).items() if l.startswith("/dev/pts/")][0]
    pidfd = os.pidfd_open(w.pid)
    held = libc.syscall(438, pidfd, a_slave, 0)  # pidfd_getfd
    os.close(pidfd)
    check(held >= 0, "pidfd_getfd: errno %d" % ctypes.get_errno())
    try:
        # Before anything is written: no image directory, no page file.
        h.dump_refused(w.pid, ["pseudoterminal /dev/pts/", "held by pid %d (fd %d)" % (os.getpid(), held),
                               "outside the dumped tree"])
    finally:
        os.close(held)
    check_pty_ok(h.verify_ok(w, when="after the refused dump"), "after the refused dump")


def test_pty_other_devpts_refused(h):
    """The tree's pty is of another devpts instance (mounted beside /dev/pts,
    as a container's /dev/pts): a restore would make it on /dev/pts under its
    number, another terminal. Refused at dump, naming the fd and the instance;
    the tree runs on with its bytes in flight."""
    d = h.mkdir("devpts")
    r = subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", d],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "mount devpts newinstance: %s" % r.stderr)
    w = None
    try:
        os.environ["WL_PTMX"] = os.path.join(d, "ptmx")
        try:
            w, pids = start_pty(h)
        finally:
            del os.environ["WL_PTMX"]
        master = [fd for fd, l in fd_links(w.pid).items() if l == os.path.join(d, "ptmx")]
        check(master, "the master from %s/ptmx in %r" % (d, fd_links(w.pid)))
        dev = os.stat(d).st_dev
        h.dump_refused(w.pid, ["pid %d fd %d" % (w.pid, master[0]),
                               "devpts instance %d:%d" % (os.major(dev), os.minor(dev)), "not restored"])
        check_pty_ok(h.verify_ok(w, when="after the refused dump"), "after the refused dump")
    finally:
        if w and cryotest.pid_alive(w.pid):
            h.cleanup_one(w.pid)
        subprocess.run(["umount", "-l", d], capture_output=True, timeout=30)


def start_own_devpts(h):
    """A container's terminal: `unshare --mount --fork sh -c 'mount -t devpts
    -o newinstance,ptmxmode=0666 devpts /dev/pts && exec pty CTL'`, a tree in
    a mount namespace of its own with a devpts instance of its own at
    /dev/pts, holding a pty pair of it (opened through /dev/ptmx, which
    leads to the instance beside it). (unshare's Workload, pty's, pids of
    pty's tree)."""
    ctl = h.mkdir("pty")
    u, w = h.start_under_unshare("pty", [
        "/usr/bin/unshare", "--mount", "--fork", "--", "/bin/sh", "-c",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts && exec \"$0\" \"$1\"",
        h.workload_path("pty"), ctl], ctl)
    pids = wait_pty_tree(w.pid)
    check_own_devpts(w.pid, "the original")
    return u, w, pids


def check_own_devpts(pid, when):
    """pid's /dev/pts is a devpts instance other than cryo's, and its pty is of it."""
    mine = os.stat("/dev/pts").st_dev
    theirs = os.stat("/proc/%d/root/dev/pts" % pid).st_dev
    check(theirs != mine, "%s: /dev/pts is the host's instance" % when)
    slaves = [os.stat("/proc/%d/fd/%d" % (pid, fd)).st_dev for fd, l in fd_links(pid).items()
              if re.match(r"/dev/pts/\d+$", l)]
    check(slaves and all(d == theirs for d in slaves), "%s: the slave is not of the tree's instance" % when)


def test_pty_own_devpts_kill_and_rewind(h):
    """The tree's mount namespace with its devpts instance (kill, then
    rewind): restored with a fresh instance at /dev/pts in the fresh mount
    namespace and the pty made in it again at its number (0 in a fresh
    instance), with its settings, session and bytes in flight."""
    u, w, pids = start_own_devpts(h)
    images = h.mkdir("img")
    h.dump(u.pid, images)
    h.reap_original(u)
    wait_gone(h, pids + [u.pid])
    h.check_feature(images, "mount-devpts")
    check_pty_image(h, images)
    for when in ("after restore", "after rewind"):
        r = h.restore(images, detach=True, expected_pid=u.pid)
        rw = w.restored(w.pid)
        check_eq(sorted(tree_pids(w.pid)), sorted(pids), "pids of the restored tree %s" % when)
        h.tracked_pids.extend(pids)
        check_own_devpts(w.pid, when)
        check_pty_ok(h.verify_ok(rw, when=when + " (bytes in flight)"), when)
        check_pty_ok(h.verify_ok(rw, when=when + " (ping)"), when)
        for pid in (w.pid, r.pid):  # the pty holder first: its children then get SIGHUP
            h.cleanup_one(pid)
        wait_gone(h, pids + [r.pid])


def test_pty_master_outside_refused(h):
    """A job on a terminal whose master is outside the tree is refused without
    --shell-job, naming pid, fd and the terminal; it runs on untouched."""
    term = Terminal(h)
    bash, w = start_job(h, term, "T1> ")
    # Before anything is written: no image directory, no page file.
    h.dump_refused(w.pid, ["pid %d" % w.pid, "fd 0", term.path, "--shell-job"])
    check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    verify_job(h, w, term, when="after the refused dump")


def shell_job(h, leave_running):
    """A job of an interactive bash on terminal 1, dumped with --shell-job, is
    restored by `cryo restore --shell-job` typed into another bash on terminal
    2: it becomes that shell's foreground job, with the termios it had (ECHO
    off), and talks on terminal 2."""
    t1 = Terminal(h)
    bash1, w = start_job(h, t1, "T1> ")
    check("window 24x80, SIGWINCH 0" in verify_job(h, w, t1, when="before dump"), "the job's window before dump")
    images = h.mkdir("img")
    dump_ok(h, w.pid, images, ["--shell-job"] + (["--leave-running"] if leave_running else []))
    img = h.show_json(images)
    check({"shell-job", "tty"} <= set(img["features"]), "image features: %r" % img["features"])
    check_eq([t["kind"] for t in img["ttys"]], ["TTY_EXTERNAL"], "terminals in the image")
    if leave_running:
        # The shell's terminal was not touched: the job still talks on it.
        verify_job(h, w, t1, when="of the original after dump --leave-running")
        h.cleanup_one(w.pid)
    t1.expect(r"T1> ", what="bash 1 after its job was killed")
    deadline = time.monotonic() + 10
    while proc_stat(w.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    check(proc_stat(w.pid) is None, "the dumped job %d is still there" % w.pid)

    if not leave_running:
        # Without --shell-job, or without a terminal, the restore is refused
        # and creates nothing.
        r = h.run_cryo(["restore", "-D", images, "-d"])
        check(r.rc == 1 and "restore it with --shell-job" in r.message, "restore without --shell-job\n" + r.describe())
        r = h.run_cryo(["restore", "--shell-job", "-D", images, "-d"])
        check(r.rc == 1 and "cryo has none" in r.message, "restore --shell-job without a terminal\n" + r.describe())
        check(proc_stat(w.pid) is None, "a refused restore left pid %d behind" % w.pid)
    t2 = Terminal(h, rows=30, cols=100)
    bash2 = start_bash(h, t2, "T2> ")
    pidfile = os.path.join(h.mkdir("restore"), "pid")
    log = os.path.join(h.tmp_root, "restore-shell-job.log")
    t2.type(cryo_cmd(h, ["restore", "--shell-job", "-D", images, "--pidfile", pidfile], log)
            + "; echo cryo-exit=$?\n")
    check_eq(int(wait_file(pidfile, 30, "cryo restore --shell-job")), w.pid, "restored pid")
    rw = w.restored(w.pid)
    check_eq(stat_field(w.pid, 6), bash2.pid, "session of the restored job (the restoring shell's)")
    check_eq(stat_field(w.pid, 7), tty_nr_of(t2.path), "controlling terminal of the restored job")
    check_eq(stat_field(w.pid, 8), stat_field(w.pid, 5), "foreground group of terminal 2 (the job's)")
    line = verify_job(h, rw, t2, when="after restore")
    check("window 30x100, SIGWINCH 1" in line, "the job on its new, bigger terminal: %s" % line)
    verify_job(h, rw, t2, exit=True, when="after restore (exit)")
    t2.expect(r"cryo-exit=0", what="the restoring bash")
    t2.expect(r"T2> ", what="the restoring bash's prompt")


def test_shell_job(h):
    shell_job(h, leave_running=False)


def test_shell_job_leave_running(h):
    shell_job(h, leave_running=True)


def test_bash_interactive(h):
    """bash -i with a variable, a cwd and job control, checkpointed (kill mode)
    and restored with --shell-job into a bash on another terminal."""
    t1 = Terminal(h)
    bash = start_bash(h, t1, "A> ")
    work = h.mkdir("bash-cwd")
    t1.type("X=cryo$((6*7)); cd %s && echo set-$X\n" % shlex.quote(work))
    t1.expect(r"set-cryo42", what="bash -i")
    t1.expect(r"A> ", what="bash -i prompt")
    images = h.mkdir("img")
    dump_ok(h, bash.pid, images, ["--shell-job"])
    check_eq(h.wait_exit(cryotest.Workload("bash", None, bash.pid, bash)), ("signal", 9), "dumped bash")

    t2 = Terminal(h, rows=30, cols=100)
    outer = start_bash(h, t2, "B> ")
    pidfile = os.path.join(h.mkdir("restore"), "pid")
    log = os.path.join(h.tmp_root, "restore-bash.log")
    t2.type(cryo_cmd(h, ["restore", "--shell-job", "-D", images, "--pidfile", pidfile], log)
            + "; echo cryo-exit=$?\n")
    check_eq(int(wait_file(pidfile, 30, "cryo restore --shell-job")), bash.pid, "restored pid")
    h.tracked_pids.append(bash.pid)
    check_eq(stat_field(bash.pid, 6), outer.pid, "session of the restored bash (the restoring shell's)")
    t2.type("echo cols=$COLUMNS\n")
    t2.expect(r"cols=100\r\n", what="restored bash: the new window size (SIGWINCH)")
    t2.type("echo x=$X; pwd; (sleep 0.1; echo done-$((1+1))); sleep 0.1 & wait $!; echo bg-$?\n")
    t2.expect(r"x=cryo42\r\n", what="restored bash: the variable")
    t2.expect(re.escape(work) + r"\r\n", what="restored bash: the cwd")
    t2.expect(r"done-2\r\n", what="restored bash: a subshell job")
    t2.expect(r"bg-0\r\n", what="restored bash: a background job")
    t2.expect(r"A> ", what="restored bash: its prompt")
    t2.type("exit\n")
    t2.expect(r"cryo-exit=0", what="the restoring bash")


# ---------------------------------------------------------------- Java

JAVA = "/usr/bin/java"
# -XX:-UsePerfData: no /tmp/hsperfdata_USER/PID, a shared file mapping the
# JVM deletes when it exits normally (a restore after that cannot map it).
# Small heap and the serial collector: a small, quick JVM. (It restores with
# the default flags too.)
JAVA_FLAGS = ["-XX:-UsePerfData", "-Xmx64m", "-XX:+UseSerialGC"]


def start_java(h):
    cls = os.path.join(h.workloads, "Counter.class")
    check(os.path.isfile(cls), "%s is missing: javac (openjdk-17-jdk-headless) was not found at build time" % cls)
    check(os.path.isfile(JAVA), "%s is missing (openjdk-17-jre-headless)" % JAVA)
    ctl = h.mkdir("java")
    w = h.start("java", [JAVA] + JAVA_FLAGS + ["-cp", h.workloads, "Counter", ctl], ctl)
    h.wait_ready(w, timeout=60)
    h.verify_ok(w, when="before dump")
    return w


def test_java_kill(h):
    w = start_java(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, when="after restore")
    h.verify_ok(rw, when="after restore (again)")
    h.verify_ok(rw, exit=True, when="after restore (exit)")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


def test_java_rewind(h):
    w = start_java(h)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    for i in range(2):
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, exit=True, when="of rewind instance %d" % (i + 1))
        check_eq(h.wait_exit(rw), ("exit", 0), "exit status of rewind instance %d" % (i + 1))


def test_java_leave_running(h):
    w = start_java(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running")
    h.kill_and_reap(w)
    r = h.restore(images, detach=True, expected_pid=w.pid)
    rw = w.restored(r.pid)
    h.verify_ok(rw, exit=True, when="after restore")
    check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")


# ---------------------------------------------------------------- refusals

def fd_links(pid):
    out = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            pass
    return out


def test_fanotify_and_other_kinds_refused(h):
    """fanotify, io_uring, userfaultfd, perf_event and BPF fds: the dump fails
    naming pid, fd and kind; the process runs on untouched."""
    for kind, name, link in [("fanotify", "fanotify", "anon_inode:[fanotify]"),
                             ("io_uring", "io_uring", "anon_inode:[io_uring]"),
                             ("userfaultfd", "userfaultfd", "anon_inode:[userfaultfd]"),
                             ("perf_event", "perf_event", "anon_inode:[perf_event]"),
                             ("bpf-map", "BPF map", "anon_inode:bpf-map")]:
        w = h.start_workload("iouring", kind)
        h.wait_ready(w)
        fds = [fd for fd, l in fd_links(w.pid).items() if l == link]
        check_eq(len(fds), 1, "%s fds of the holder" % kind)
        images = h.mkdir("img")
        r = h.dump(w.pid, images, expect_ok=False)
        check(r.rc not in (0, "TIMEOUT"), "dump of a %s holder: %s\n%s" % (kind, r.rc, r.describe()))
        for n in ["pid %d" % w.pid, "fd %d" % fds[0], name]:
            check(n in r.message, "dump error for a %s holder does not name %r\n%s" % (kind, n, r.describe()))
        check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory")
        check_eq(cryotest.proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
        h.verify_ok(w, exit=True, when="after the refused dump of a %s holder" % kind)
        check_eq(h.wait_exit(w), ("exit", 0), "exit status of the %s holder" % kind)


TESTS = [
    test_pty_kill,
    test_pty_leave_running,
    test_pty_rewind,
    test_pty_index_taken,
    test_pty_slave_held_outside_refused,
    test_pty_other_devpts_refused,
    test_pty_own_devpts_kill_and_rewind,
    test_pty_master_outside_refused,
    test_shell_job,
    test_shell_job_leave_running,
    test_bash_interactive,
    test_java_kill,
    test_java_leave_running,
    test_java_rewind,
    test_fanotify_and_other_kinds_refused,
]


def main():
    # Every Terminal a test opens is closed at its end.
    orig_reset = cryotest.Harness._reset_tracking

    def reset(self):
        for t in getattr(self, "terminals", []):
            t.close()
        self.terminals = []
        orig_reset(self)
    cryotest.Harness._reset_tracking = reset
    return cryotest.main(TESTS, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
