#!/usr/bin/python3
"""End-to-end tests of cgroup controller settings (src/cgroup/cgroup_settings.h):
a tree placed in cgroups with limits (memory, pids, cpu, cpuset; on cgroup2
the core cgroup.max.* limits, the only ones a v2 cgroup has here while the
controllers are bound to v1 hierarchies) below a test's own cgroup. The
restore makes the cgroups again with the same limits (kill, then rewind),
accepts cgroups that exist with the same limits, refuses one that exists
with others by name, fails on a write the kernel refuses (naming the cgroup,
the file and the errno) and leaves nothing behind; the dump refuses a cgroup
with device rules of its own (v1) by name, the tree running on.

Run: test_cgroup_limits.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_taskstate import Cgroups, cgroups_of, children_of, dump_kill, subdirs  # noqa: E402

# hierarchy -> ((root's leaf, child's leaf), {relative dir: {file: value}}),
# the dirs relative to the test's tag cgroup. Values as the kernel reads them.
# Those of feature cgroup-more-settings (recorded when not at a fresh
# cgroup's value): memory.kmem.tcp.limit_in_bytes, notify_on_release, the
# cpuset flags, cgroup.pressure.
LAYOUT = {
    "memory": (("r", "r/c"), {"": {"memory.limit_in_bytes": "536870912"},
                              "r": {"memory.limit_in_bytes": "268435456",
                                    "memory.soft_limit_in_bytes": "134217728", "memory.swappiness": "17",
                                    "memory.kmem.tcp.limit_in_bytes": "16777216"},
                              "r/c": {"memory.limit_in_bytes": "201326592"}}),
    "pids": (("r", "r/c"), {"r": {"pids.max": "40"}, "r/c": {"pids.max": "9"}}),
    "cpu": (("r", None), {"r": {"cpu.cfs_period_us": "50000", "cpu.cfs_quota_us": "20000", "cpu.shares": "512",
                                "notify_on_release": "1"}}),
    "cpuset": ((None, "c"), {"c": {"cpuset.cpus": "0", "cpuset.mem_hardwall": "1",
                                   "cpuset.memory_spread_page": "1"}}),
    "": (("a", "a/b"), {"a": {"cgroup.max.descendants": "5", "cgroup.pressure": "0"},
                        "a/b": {"cgroup.max.depth": "2"}}),
}


class Placed:
    def __init__(self, h, cg):
        self.h, self.cg = h, cg
        ctl = h.mkdir("cgroups")
        self.w = h.start("cgroups", [h.workload_path("cgroups"), ctl], ctl)
        for _ in range(500):
            kids = children_of(self.w.pid)
            if kids:
                break
            time.sleep(0.01)
        (self.child,) = kids
        mine = cgroups_of(os.getpid())
        self.tag = "cryo-limits-%d-%d" % (os.getpid(), h.counter)
        self.limits = {}  # cgroup directory -> {file: value}
        self.bases = {}   # hierarchy -> the tag cgroup's path
        used = []
        for hier, ((root_leaf, child_leaf), settings) in LAYOUT.items():
            if hier not in cg.mounts or hier not in mine:
                continue
            if hier == "cpuset" and os.cpu_count() < 2:
                continue
            used.append(hier or "cgroup2")
            base = "%s/%s" % (mine[hier].rstrip("/"), self.tag)
            self.bases[hier] = base
            for rel in sorted(set(settings) | {l for l in (root_leaf, child_leaf) if l}, key=len):
                path = cg.make(hier, base + ("/" + rel if rel else ""))
                d = cg.dir(hier, path)
                for f, v in settings.get(rel, {}).items():
                    with open(os.path.join(d, f), "w") as out:
                        out.write(v)
                    check_eq(cryotest.read_text(os.path.join(d, f)).strip(), v, "%s/%s as set" % (d, f))
                    self.limits.setdefault(d, {})[f] = v
            for pid, leaf in ((self.w.pid, root_leaf), (self.child, child_leaf)):
                if leaf:
                    cg.move(pid, hier, "%s/%s" % (base, leaf))
        check(self.limits, "no cgroup hierarchy with limits is mounted here")
        h.note("hierarchies used: %s" % ", ".join(used))
        with open(os.path.join(ctl, "placed"), "w"):
            pass
        h.wait_ready(self.w)
        self.places = {pid: cgroups_of(pid) for pid in (self.w.pid, self.child)}

    def check_limits(self, when):
        for d, files in self.limits.items():
            for f, v in files.items():
                check_eq((cryotest.read_text(os.path.join(d, f)) or "").strip(), v, "%s/%s %s" % (d, f, when))

    def check_restored(self, rr, when):
        check_eq({pid: cgroups_of(pid) for pid in (self.w.pid, self.child)}, self.places, "cgroups " + when)
        self.check_limits(when)
        self.h.verify_ok(self.w.restored(rr.pid), when=when)

    def kill_all(self):
        """The root first (the child then comes to the harness, the subreaper),
        whatever a failed check left running."""
        for pid in (self.w.pid, self.child):
            if cryotest.pid_alive(pid):
                self.h.cleanup_one(pid)

    def kill_restored(self, rr):
        for pid in (rr.pid, self.child):
            self.h.cleanup_one(pid)
        cryotest.wait_pids_gone([rr.pid, self.child])


def test_limits_kill_and_rewind(h):
    """Dump (kill); the cgroups removed; restore: made again with their
    limits, parents before children. Then rewind into the cgroups as they
    are (same limits: accepted)."""
    cg = Cgroups(h)
    p = None
    try:
        p = Placed(h, cg)
        h.verify_ok(p.w, when="before dump")
        images = h.mkdir("img")
        dump_kill(h, p.w, images)
        feats = h.show_json(images)["features"]
        check("cgroup-settings" in feats and "cgroup-more-settings" in feats,
              "feature cgroup-settings or cgroup-more-settings missing: %s" % feats)
        cg.rmdir_all(cg.made)  # the restore makes them again
        rr = h.restore(images, expected_pid=p.w.pid)
        p.check_restored(rr, "after restore into made cgroups")
        p.kill_restored(rr)
        rr = h.restore(images, expected_pid=p.w.pid)
        p.check_restored(rr, "after rewind into existing cgroups")
        p.kill_restored(rr)
    finally:
        if p:
            p.kill_all()
        cg.remove()


def test_limits_mismatch_refused(h):
    """A cgroup that exists with another limit than the image's: refused by
    name before anything is made; --cgroup-root elsewhere restores."""
    cg = Cgroups(h)
    alt_dirs = []
    p = None
    try:
        p = Placed(h, cg)
        images = h.mkdir("img")
        dump_kill(h, p.w, images)
        d, files = next(iter(sorted(p.limits.items(), key=lambda kv: -len(kv[0]))))
        f = sorted(files)[0]
        was = files[f]
        new = "8" if f == "pids.max" else ("3" if f.startswith("cgroup.max") else None)
        if new is None:
            new = str(int(was) // 2) if was.isdigit() else was
        with open(os.path.join(d, f), "w") as out:
            out.write(new)
        before = sorted(sum((subdirs(cg.dir(hh, b)) for hh, b in p.bases.items()), []))
        r = h.restore(images, expect_ok=False)
        check(getattr(r, "rc", 0) != 0, "restore into a cgroup with other limits succeeded")
        check(d in r.stderr and f in r.stderr and "--cgroup-root" in r.stderr,
              "refusal names the cgroup %s and %s:\n%s" % (d, f, r.describe()))
        check(not cryotest.pid_alive(p.w.pid), "pid %d left by the refused restore" % p.w.pid)
        after = sorted(sum((subdirs(cg.dir(hh, b)) for hh, b in p.bases.items()), []))
        check_eq(after, before, "cgroups after the refused restore")
        # Elsewhere (a fresh root in every hierarchy used), the limits are made.
        mine = cgroups_of(os.getpid())
        alt = "/%s-alt" % p.tag
        roots = []
        for hh in p.bases:
            alt_dirs.append(cg.dir(hh, cg.make(hh, mine[hh].rstrip("/") + alt)))
            roots += ["--cgroup-root", "%s:%s%s" % (hh or "cgroup2", mine[hh].rstrip("/"), alt)]
        rr = h.restore(images, expected_pid=p.w.pid, extra=roots)
        for d2, files2 in p.limits.items():
            for hh, b in p.bases.items():
                bd = cg.dir(hh, b)
                if d2.startswith(bd):
                    moved = cg.dir(hh, mine[hh].rstrip("/") + alt) + "/" + p.tag + d2[len(bd):]
                    for f2, v2 in files2.items():
                        check_eq((cryotest.read_text(os.path.join(moved, f2)) or "").strip(), v2,
                                 "%s/%s under --cgroup-root" % (moved, f2))
        p.kill_restored(rr)
    finally:
        if p:
            p.kill_all()
        cg.rmdir_all(sum((subdirs(a) for a in alt_dirs), []))  # made by the restore
        cg.remove()


def test_kernel_refused_write_fails_cleanly(h):
    """A limit the kernel refuses where the restore puts the tree (a cpuset
    root with fewer CPUs than the recorded cpuset.cpus): the restore fails
    naming the cgroup, the file and the errno, and leaves no cgroup and no
    process behind."""
    cg = Cgroups(h)
    try:
        if "cpuset" not in cg.mounts or os.cpu_count() < 2:
            h.note("skipped: needs a v1 cpuset hierarchy and 2 CPUs")
            return
        p = Placed(h, cg)
        images = h.mkdir("img")
        dump_kill(h, p.w, images)
        mine = cgroups_of(os.getpid())
        alt = cg.make("cpuset", mine["cpuset"].rstrip("/") + "/%s-narrow" % p.tag)
        alt_dir = cg.dir("cpuset", alt)
        with open(os.path.join(alt_dir, "cpuset.cpus"), "w") as out:
            out.write("1")
        r = h.restore(images, expect_ok=False, extra=["--cgroup-root", "cpuset:" + alt])
        check(getattr(r, "rc", 0) != 0, "restore under a narrower cpuset succeeded")
        check("cpuset.cpus" in r.stderr and alt_dir in r.stderr and "(errno " in r.stderr,
              "failure names the cgroup, cpuset.cpus and the errno:\n%s" % r.describe())
        check_eq(subdirs(alt_dir), [], "cgroups left below %s" % alt_dir)
        check(not cryotest.pid_alive(p.w.pid), "pid %d left by the failed restore" % p.w.pid)
    finally:
        if p:
            p.kill_all()
        cg.remove()


def test_device_rules_refused_at_dump(h):
    """A cgroup of the tree with device rules of its own (v1 devices):
    refused at dump by name, the tree runs on."""
    cg = Cgroups(h)
    w = None
    try:
        mine = cgroups_of(os.getpid())
        if "devices" not in cg.mounts or "devices" not in mine:
            h.note("skipped: no v1 devices hierarchy")
            return
        ctl = h.mkdir("cgroups")
        w = h.start("cgroups", [h.workload_path("cgroups"), ctl], ctl)
        for _ in range(500):
            if children_of(w.pid):
                break
            time.sleep(0.01)
        path = cg.make("devices", "%s/cryo-devices-%d" % (mine["devices"].rstrip("/"), os.getpid()))
        d = cg.dir("devices", path)
        with open(os.path.join(d, "devices.deny"), "w") as out:
            out.write("a")
        with open(os.path.join(d, "devices.allow"), "w") as out:
            out.write("c 1:3 rwm")
        cg.move(w.pid, "devices", path)
        with open(os.path.join(ctl, "placed"), "w"):
            pass
        h.wait_ready(w)
        r = h.dump(w.pid, h.mkdir("img"), expect_ok=False)
        check(r.rc != 0, "dump of a tree in a cgroup with device rules succeeded")
        check(path in r.stderr and "devices.list" in r.stderr, "refusal names the cgroup:\n" + r.describe())
        h.verify_ok(w, exit=True, when="after the refused dump")
        check_eq(h.wait_exit(w), ("exit", 0), "exit status")
    finally:
        if w and cryotest.pid_alive(w.pid):
            h.cleanup_one(w.pid)
        cg.remove()


def test_unknown_file_refused_at_dump(h):
    """A writable cgroup file cryo does not know, set otherwise than in the
    parent cgroup (this machine's kernel has memory.shown_ram_in_bytes, a
    vendor's v1 memory file): refused at dump by name (cgroup, file, value),
    the tree runs on; as the parent's (0), the dump goes through."""
    cg = Cgroups(h)
    w = None
    try:
        mine = cgroups_of(os.getpid())
        knob = "memory.shown_ram_in_bytes"
        if "memory" not in cg.mounts or "memory" not in mine or \
                not os.path.exists(os.path.join(cg.dir("memory", mine["memory"]), knob)):
            h.note("skipped: no v1 memory hierarchy with %s (a vendor kernel's file)" % knob)
            return
        ctl = h.mkdir("cgroups")
        w = h.start("cgroups", [h.workload_path("cgroups"), ctl], ctl)
        for _ in range(500):
            if children_of(w.pid):
                break
            time.sleep(0.01)
        path = cg.make("memory", "%s/cryo-unknown-%d" % (mine["memory"].rstrip("/"), os.getpid()))
        d = cg.dir("memory", path)
        parent = (cryotest.read_text(os.path.join(os.path.dirname(d), knob)) or "").strip()
        with open(os.path.join(d, knob), "w") as out:
            out.write("1073741824")
        check_eq(cryotest.read_text(os.path.join(d, knob)).strip(), "1073741824", knob + " as set")
        cg.move(w.pid, "memory", path)
        with open(os.path.join(ctl, "placed"), "w"):
            pass
        h.wait_ready(w)
        r = h.dump_refused(w.pid, [path, knob, '"1073741824"', "a file cryo does not know"])
        h.note("refused: %s" % r.message.strip())
        h.verify_ok(w, when="after the refused dump")
        with open(os.path.join(d, knob), "w") as out:
            out.write(parent)
        r = h.dump(w.pid, h.mkdir("img"), leave_running=True)
        h.verify_ok(w, exit=True, when="after the dump with %s as the parent's" % knob)
        check_eq(h.wait_exit(w), ("exit", 0), "exit status")
    finally:
        if w and cryotest.pid_alive(w.pid):
            h.cleanup_one(w.pid)
        cg.remove()


if __name__ == "__main__":
    sys.exit(cryotest.main([
        test_limits_kill_and_rewind,
        test_limits_mismatch_refused,
        test_kernel_refused_write_fails_cleanly,
        test_device_rules_refused_at_dump,
        test_unknown_file_refused_at_dump,
    ]))
