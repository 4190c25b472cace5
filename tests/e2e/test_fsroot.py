#!/usr/bin/python3
"""`cryo dump --fs-root DIR`: a container's whole root file system carried in
the image and put back before the tree resumes.

- A program with its cwd in DIR writes a tree of files there (a file with a
  hole, a symbolic link, an xattr, modes, subdirectories, a file with a
  second name in another directory: one inode, two links after restore). Kill mode: DIR is
  changed after the dump, the restored program finds DIR as it left it.
  Rewind: the original goes on writing after a leave-running dump; each of
  two restores rolls its later writes back.
- DIR an overlayfs mount (lower, upper, work dirs the test makes): the
  program deletes a lower file (a whiteout in the upper dir), replaces a
  lower directory by a new one (an opaque directory) and adds a file to
  another (copied up, not opaque; made opaque after the dump, the restore
  takes the xattr away); only the upper dir is
  carried (the image does not hold the lower files' content); the restore
  unmounts the overlay, puts the upper dir back, mounts it again, and the
  restored program sees its view. A lower dir changed since the dump is
  refused by name, the overlay left mounted as it was.
- --parent: the second dump of an unchanged tree but one file stores that
  file only (counted in `cryo show --json`), and restores.
- A mount point under a plain DIR is refused by name before the tree is
  touched.
- `cryo migrate --fs-root` to a page server on this machine: the received
  image carries DIR's files and the restored program finds them.

Run: test_fsroot.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq  # noqa: E402

# argv: CTL KIND. Its cwd is DIR (given by the test); builds its files, then
# answers CTL/check with CTL/result ("ok" or what differs from what it made),
# CTL/scribble by changing DIR (its writes after the dump), CTL/exit.
PROGRAM = r"""
import hashlib, os, shutil, stat, sys, time
ctl, kind = sys.argv[1], sys.argv[2]

def put(name, text):
    with open(ctl + "/" + name + ".tmp", "w") as f:
        f.write(text)
    os.rename(ctl + "/" + name + ".tmp", ctl + "/" + name)

def walk():
    out = {}
    for dirpath, dirnames, filenames in os.walk("."):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec.append(hashlib.sha256(f.read()).hexdigest())
                rec.append(sorted((x, os.getxattr(p, x)) for x in os.listxattr(p) if x.startswith("user.")))
                rec.append(st.st_nlink)
            out[p] = rec
    # Hard links: the two names are one inode.
    a, b = os.stat("etc/app/config"), os.stat("var/config-hard")
    out["config-hard is config"] = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return out

os.makedirs("etc/app", exist_ok=True)
with open("etc/app/config", "w") as f:
    f.write("setting = 1\n" * 100)
os.setxattr("etc/app/config", "user.cryo", b"fs root")
os.chmod("etc/app/config", 0o640)
os.makedirs("var/log", exist_ok=True)
with open("var/log/app.log", "wb") as f:
    f.write(os.urandom(300000))
with open("var/sparse", "wb") as f:
    f.seek(32 << 20)
    f.write(b"tail")
os.symlink("app/config", "etc/config-link")
os.link("etc/app/config", "var/config-hard")
if kind == "overlay":
    os.unlink("lower-file")          # a whiteout in the upper dir
    shutil.rmtree("lower-dir")       # made again: an opaque directory
    os.mkdir("lower-dir")
    with open("lower-dir/new", "w") as f:
        f.write("made over the lower dir")
    with open("merged-dir/added", "w") as f:  # copied up, not opaque
        f.write("beside the lower file")
made = walk()

def scribble(n):
    with open("etc/app/config", "a") as f:
        f.write("later write %d\n" % n)
    os.unlink("var/sparse")
    with open("later-%d" % n, "w") as f:
        f.write("written after the dump")
    if kind == "overlay":
        with open("lower-file", "w") as f:
            f.write("back again")
        os.mkdir("lower-dir/sub-%d" % n)

def check():
    now = walk()
    if now == made:
        return "ok"
    diff = sorted(k for k in set(made) | set(now) if made.get(k) != now.get(k))
    return "differs: " + " ".join("%s: %r -> %r" % (k, made.get(k), now.get(k)) for k in diff)

put("ready", str(os.getpid()))
n = 0
while True:
    for order in ("check", "scribble", "exit"):
        try:
            os.unlink(ctl + "/" + order)
        except FileNotFoundError:
            continue
        if order == "exit":
            sys.exit(0)
        if order == "scribble":
            n += 1
            scribble(n)
            put("result", "scribbled")
        else:
            put("result", check())
    time.sleep(0.01)
"""


def order(w, what):
    path = w.path(what)
    with open(path + ".tmp", "w") as f:
        f.write("1")
    os.rename(path + ".tmp", path)


def ask(w, what="check", timeout=30):
    order(w, what)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        txt = cryotest.read_text(w.path("result"))
        if txt:
            os.unlink(w.path("result"))
            return txt.strip()
        time.sleep(0.01)
    cryotest.fail("%s: no result within %.0fs; stderr: %s" % (w.name, timeout, w.stderr()[-2000:]))


def start(h, root, kind):
    ctl = h.mkdir("fsroot-" + kind)
    script = os.path.join(ctl, "program.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    # The program's cwd is DIR: started through a shell that changes into it.
    w = h.start("fsroot-" + kind, ["/bin/sh", "-c", 'cd "$0" && exec "$1" "$2" "$3" "$4"', root, PYTHON, script, ctl,
                                   kind], ctl)
    h.wait_ready(w, timeout=30)
    check_eq(os.readlink("/proc/%d/cwd" % w.pid), root, "the program's cwd")
    return w


def finish(h, w):
    order(w, "exit")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of %s" % w.name)


def restore(h, w, images, extra=()):
    r = h.restore(images, detach=True, expected_pid=w.pid, extra=extra)
    return w.restored(r.pid)


def outside_change(root):
    """What another program does to DIR after the dump."""
    with open(root + "/etc/app/config", "w") as f:
        f.write("replaced\n")
    os.unlink(root + "/etc/config-link")
    os.mkdir(root + "/made-after")
    with open(root + "/var/log/extra", "w") as f:
        f.write("x")


def no_temp_names(*dirs):
    for d in dirs:
        left = [os.path.join(p, n) for p, ds, fs in os.walk(d) for n in ds + fs if n.startswith(".cryo-")]
        check(not left, "temporary names left behind: %s" % left)


def test_plain_kill(h):
    root = h.mkdir("root")
    w = start(h, root, "plain")
    images = h.mkdir("img")
    h.dump(w.pid, images, extra=["--fs-root", root])
    h.reap_original(w)
    outside_change(root)
    rw = restore(h, w, images, extra=["--no-restore-files"])
    got = ask(rw)
    check(got.startswith("differs:") and "config" in got, "with --no-restore-files the program sees the change: %r" % got)
    h.kill_and_reap(rw)
    rw = restore(h, w, images)
    check_eq(ask(rw), "ok", "the restored program's DIR")
    no_temp_names(root)
    finish(h, rw)


def test_plain_rewind(h):
    root = h.mkdir("root")
    w = start(h, root, "plain")
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True, extra=["--fs-root", root])
    check_eq(ask(w, "scribble"), "scribbled", "the original's later writes")
    check(ask(w).startswith("differs:"), "the original should see its later writes")
    finish(h, w)
    for i in range(2):
        rw = restore(h, w, images)
        check_eq(ask(rw), "ok", "the restored program's DIR, rewind %d" % (i + 1))
        check_eq(ask(rw, "scribble"), "scribbled", "the restored program's writes")
        finish(h, rw)


class Overlay:
    """lower/upper/work dirs and an overlay mounted on merged (unmounted by close)."""

    def __init__(self, h):
        base = h.mkdir("overlay")
        self.lower, self.upper, self.work, self.merged = (os.path.join(base, n)
                                                          for n in ("lower", "upper", "work", "merged"))
        for d in (self.lower, self.upper, self.work, self.merged):
            os.mkdir(d)
        with open(self.lower + "/lower-file", "w") as f:
            f.write("from the lower dir\n")
        os.mkdir(self.lower + "/lower-dir")
        os.mkdir(self.lower + "/merged-dir")
        with open(self.lower + "/merged-dir/keep", "w") as f:
            f.write("seen through the merged dir\n")
        with open(self.lower + "/lower-dir/old", "w") as f:
            f.write("hidden by the opaque dir\n")
        with open(self.lower + "/big-lower-file", "wb") as f:
            f.write(os.urandom(4 << 20))  # not carried: the image stays small
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=%s,upperdir=%s,workdir=%s" % (self.lower, self.upper, self.work), self.merged],
                       check=True)

    def mounted(self):
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == self.merged for line in f)

    def close(self):
        """Unmounted; detached if a process of a failed test still uses it
        (the harness kills those after the test)."""
        for _ in range(4):
            if not self.mounted():
                return
            if subprocess.run(["umount", self.merged]).returncode != 0:
                subprocess.run(["umount", "-l", self.merged], check=True)


def check_upper_layout(ov):
    st = os.lstat(ov.upper + "/lower-file")
    check(stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "lower-file should be a whiteout in the upper dir")
    check_eq(os.getxattr(ov.upper + "/lower-dir", "trusted.overlay.opaque"), b"y", "lower-dir's opaque xattr")


def test_overlay_kill(h):
    ov = Overlay(h)
    w = None
    try:
        w = start(h, ov.merged, "overlay")
        check_upper_layout(ov)
        images = h.mkdir("img")
        h.dump(w.pid, images, extra=["--fs-root", ov.merged])
        h.reap_original(w)
        shown = h.show_json(images)
        paths = {e["path"]: e["kind"] for e in shown.get("snapshot", [])}
        check_eq(paths.get(ov.upper + "/lower-file"), "whiteout", "the whiteout in the image")
        check(not any(p.startswith(ov.lower) or p.startswith(ov.merged) for p in paths),
              "only the upper dir is carried: %s" % sorted(paths))
        check(os.path.getsize(images + "/snapshot-data.img") < (2 << 20), "the lower file's content is not carried")
        # Changed through the overlay: the whiteout and the opaque dir undone.
        outside_change(ov.merged)
        with open(ov.merged + "/lower-file", "w") as f:
            f.write("back again")
        subprocess.run(["rm", "-rf", ov.merged + "/lower-dir"], check=True)  # a whiteout now
        # Made again through the overlay: opaque now, hiding merged-dir/keep.
        subprocess.run(["rm", "-rf", ov.merged + "/merged-dir"], check=True)
        os.mkdir(ov.merged + "/merged-dir")
        check_eq(os.getxattr(ov.upper + "/merged-dir", "trusted.overlay.opaque"), b"y", "merged-dir made opaque")
        rw = restore(h, w, images)
        check_eq(ask(rw), "ok", "the restored program's view of the overlay")
        check(ov.mounted(), "the overlay should be mounted again")
        check_upper_layout(ov)
        check("trusted.overlay.opaque" not in os.listxattr(ov.upper + "/merged-dir"),
              "merged-dir should not be opaque after the restore")
        no_temp_names(ov.upper, ov.work)
        finish(h, rw)
        w = None
    finally:
        if w is not None:
            h.cleanup_one(w.pid)
        ov.close()


def test_overlay_rewind(h):
    ov = Overlay(h)
    live = None
    try:
        w = live = start(h, ov.merged, "overlay")
        images = h.mkdir("img")
        h.dump(w.pid, images, leave_running=True, extra=["--fs-root", ov.merged])
        check_eq(ask(w, "scribble"), "scribbled", "the original's later writes")
        check(ask(w).startswith("differs:"), "the original should see its later writes")
        finish(h, w)
        live = None
        for i in range(2):
            live = restore(h, w, images)
            check_eq(ask(live), "ok", "the restored program's view of the overlay, rewind %d" % (i + 1))
            check_eq(ask(live, "scribble"), "scribbled", "the restored program's writes")
            finish(h, live)
            live = None
        # A lower dir changed since the dump: refused by name, the overlay
        # (with the last instance's writes) left mounted as it was.
        with open(ov.lower + "/lower-added", "w") as f:
            f.write("a new lower file")
        before = sorted(os.listdir(ov.upper))
        r = h.restore(images, expect_ok=False)
        check(not isinstance(r, cryotest.Restored) and ov.lower in r.message and "changed since the dump" in r.message,
              "restore on a changed lower dir should be refused: %r" % (getattr(r, "message", r),))
        check(ov.mounted(), "the overlay should still be mounted")
        check_eq(sorted(os.listdir(ov.upper)), before, "the upper dir after the refused restore")
        no_temp_names(ov.upper, ov.work)
    finally:
        if live is not None:
            h.cleanup_one(live.pid)
        ov.close()


def regular_stored(images, h):
    return sorted(e["path"] for e in h.show_json(images).get("snapshot", [])
                  if e["kind"] == "file" and e["depth"] == 0 and e["size"] > 0)


def test_parent_carries_changed_only(h):
    root = h.mkdir("root")
    w = start(h, root, "plain")
    first = h.mkdir("img1")
    h.dump(w.pid, first, leave_running=True, extra=["--fs-root", root])
    check_eq(len(regular_stored(first, h)), 3, "files stored by the first dump")
    with open(root + "/var/log/app.log", "ab") as f:  # one file changed
        f.write(b"one more line\n")
    second = h.mkdir("img2")
    h.dump(w.pid, second, leave_running=True, extra=["--fs-root", root, "--parent", first])
    check_eq(regular_stored(second, h), [root + "/var/log/app.log"], "files stored by the incremental dump")
    finish(h, w)
    outside_change(root)
    rw = restore(h, w, second)
    got = ask(rw)
    check(got.startswith("differs:") and "app.log" in got and "config" not in got,
          "only app.log differs from what the program made (it changed before the second dump): %r" % got)
    finish(h, rw)


def test_mount_point_refused(h):
    root = h.mkdir("root")
    w = start(h, root, "plain")
    sub = os.path.join(root, "var", "mnt")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cryo-test-fsroot", sub], check=True)
    try:
        h.dump_refused(w.pid, [sub, "mount point of another file system"], extra_args=["--fs-root", root])
    finally:
        subprocess.run(["umount", sub], check=True)
    h.dump_refused(w.pid, ["--fs-root /", "not carried"], extra_args=["--fs-root", "/"])
    finish(h, w)


def test_migrate(h):
    """`cryo migrate --fs-root`: DIR's tree goes over the stream with the
    image; the page server (on this machine) puts it back and restores."""
    import test_migrate  # noqa: E402 (its page server and migrate helpers)
    root = h.mkdir("root")
    w = start(h, root, "plain")
    images = os.path.join(h.mkdir("recv"), "img")
    srv = test_migrate.Server(h, images, extra=["--restore"])
    m = test_migrate.Migrate(h, w.pid, srv.addr, ("--insecure", "--fs-root", root))
    h.reap_original(w, timeout=60)
    test_migrate.reap_while(m, [w.pid])
    check_eq(m.wait(), 0, "cryo migrate exit status (%s)" % m.stderr())
    check_eq(srv.wait(), 0, "page-server --restore exit status (%s)" % srv.stderr())
    rw = w.restored(w.pid)
    h.tracked_pids.append(w.pid)
    paths = {e["path"] for e in h.show_json(images).get("snapshot", [])}
    names = sorted(os.listdir(images))
    data = os.path.join(images, "snapshot-data.img")
    size = os.path.getsize(data) if os.path.exists(data) else -1
    check(root + "/etc/app/config" in paths and size > 300000,
          "the received image should carry DIR's files: %s; snapshot-data.img %d bytes; %s" % (sorted(paths), size, names))
    check_eq(ask(rw), "ok", "the migrated program's DIR")
    finish(h, rw)


TESTS = [
    test_plain_kill,
    test_plain_rewind,
    test_overlay_kill,
    test_overlay_rewind,
    test_parent_carries_changed_only,
    test_mount_point_refused,
    test_migrate,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
