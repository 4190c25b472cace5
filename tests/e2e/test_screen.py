#!/usr/bin/python3
"""End-to-end test of a real program: a detached GNU screen session (the
SCREEN server, its listening UNIX socket in SCREENDIR, a pty, an interactive
shell inside running a background counter) is dumped and restored, in kill
mode, then again from the same image (rewind), and with --leave-running.
Checked from outside with screen's own client after each restore:
`screen -ls` lists the session as detached (screen reads that from its
socket's mode: 0600), `screen -X stuff` types into the shell, which still has
the variable it was given before the dump, `screen -X hardcopy` shows its
screen, and the counter goes on.

Run: test_screen.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402

NAME = "cryotest"


class Screen:
    def __init__(self, h):
        self.h = h
        self.exe = shutil.which("screen")
        check(self.exe is not None, "GNU screen is not installed (scripts/install-deps.sh installs it)")
        self.dir = h.mkdir("screen")
        self.screendir = os.path.join(self.dir, "S")
        os.mkdir(self.screendir, 0o700)
        self.env = dict(os.environ, SCREENDIR=self.screendir, HOME=self.dir, SHELL="/bin/sh", TERM="xterm")

    def run(self, *args):
        r = subprocess.run([self.exe] + list(args), env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=20)
        self.h.reap_orphans()
        return r

    def socket(self):
        names = [n for n in os.listdir(self.screendir) if n.endswith("." + NAME)]
        return os.path.join(self.screendir, names[0]) if names else None

    def pid(self):
        return int(os.path.basename(self.socket()).split(".")[0])

    def start(self):
        # The server forks away from `screen -dm`; the harness (a subreaper) gets it.
        r = self.run("-dmS", NAME, "/bin/sh")
        check_eq(r.returncode, 0, "screen -dmS: %s" % r.stderr)
        self.wait(lambda: self.socket() is not None, "the session's socket")
        self.h.tracked_pids.append(self.pid())
        # Typed before the window's shell reads, text is lost: type a harmless
        # command until it is run.
        ready = os.path.join(self.dir, "shell-ready")
        deadline = time.monotonic() + 15
        while not os.path.exists(ready):
            check(time.monotonic() < deadline, "the shell in the session did not run a command within 15 s")
            self.stuff("touch %s\n" % ready)
            time.sleep(0.2)
        # Scripts sourced by the shell: screen expands $NAME in -X arguments.
        with open(os.path.join(self.dir, "loop.sh"), "w") as f:
            f.write("i=0; while :; do i=$((i+1)); echo $i > count; sleep 0.05; done\n")
        with open(os.path.join(self.dir, "answer.sh"), "w") as f:
            f.write("echo $((x+1)) > answer-$M; echo MARK-$M-$x\n")
        self.stuff("x=41; . ./loop.sh &\n")
        self.wait(lambda: self.count() > 0, "the counter inside the session")

    def stuff(self, text):
        r = self.run("-S", NAME, "-X", "stuff", text)
        check_eq(r.returncode, 0, "screen -X stuff: %s%s" % (r.stdout, r.stderr))

    def count(self):
        try:
            return int(open(os.path.join(self.dir, "count")).read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def wait(self, cond, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                cryotest.fail("%s: not there within %.0f s" % (what, timeout))
            time.sleep(0.02)

    def wait_idle(self):
        """Until every client connection to the server was accepted (a dump
        refuses a listener with connections waiting)."""
        path = self.socket()
        def idle():
            out = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, timeout=10).stdout
            return any(f[4:5] == [path] and f[2] == "0" for f in (l.split() for l in out.splitlines()))
        self.wait(idle, "the screen server accepting its clients")

    def check_works(self, when, mark):
        """Everything the issue asks of a restored session, from outside."""
        st = os.lstat(self.socket())
        check(stat.S_ISSOCK(st.st_mode), "%s: %s is not a socket" % (when, self.socket()))
        check_eq(oct(st.st_mode & 0o7777), "0o600", "%s: mode of the session's socket" % when)
        check_eq(st.st_uid, os.getuid(), "%s: owner of the session's socket" % when)
        ls = self.run("-ls")
        check("%d.%s" % (self.pid(), NAME) in ls.stdout and "Detached" in ls.stdout,
              "%s: screen -ls does not list the session as detached:\n%s%s" % (when, ls.stdout, ls.stderr))
        for _ in range(2):  # (a rewind starts it again from the image's value)
            seen = self.count()
            self.wait(lambda: self.count() != seen, "%s: the counter going on" % when)
        answer = os.path.join(self.dir, "answer-" + mark)
        self.stuff("M=%s; . ./answer.sh\n" % mark)
        self.wait(lambda: os.path.exists(answer) and open(answer).read() == "42\n", "%s: the shell's answer" % when)
        copy = os.path.join(self.dir, "hardcopy-" + mark)
        r = self.run("-S", NAME, "-X", "hardcopy", copy)
        check_eq(r.returncode, 0, "%s: screen -X hardcopy: %s%s" % (when, r.stdout, r.stderr))
        self.wait(lambda: os.path.exists(copy) and ("MARK-%s-41" % mark) in open(copy, errors="replace").read(),
                  "%s: the hardcopy showing the shell's output" % when)
        self.wait_idle()

    def tree(self, pid):
        return [pid] + self.h._descendants(pid)

    def kill(self, pid):
        pids = self.tree(pid)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cryotest.wait_pids_gone(pids)


def restore_and_check(h, s, images, pid, when):
    r = h.restore(images, detach=True, expected_pid=pid)
    s.check_works(when, when.replace(" ", "-"))
    s.kill(r.pid)


def test_screen_kill_and_rewind(h):
    s = Screen(h)
    s.start()
    s.check_works("before the dump", "before")
    pid = s.pid()
    tree = s.tree(pid)
    images = h.mkdir("img")
    h.dump(pid, images)
    cryotest.wait_pids_gone(tree)
    restore_and_check(h, s, images, pid, "after restore")
    restore_and_check(h, s, images, pid, "after a second restore")


def test_screen_leave_running(h):
    s = Screen(h)
    s.start()
    s.wait_idle()
    pid = s.pid()
    images = h.mkdir("img")
    h.dump(pid, images, leave_running=True)
    s.check_works("the original after dump --leave-running", "original")
    s.kill(pid)
    restore_and_check(h, s, images, pid, "after restore")


TESTS = [
    test_screen_kill_and_rewind,
    test_screen_leave_running,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
