#!/usr/bin/python3
"""Record mutation campaign: edits real images field by field, the way a buggy
or hostile writer would (checksums, sizes and image id kept right, with
image_mutate), and checks what cryo makes of each one.

For each workload: dump it (kill mode), restore that image and dump the
restored tree again (the baseline: which fields come back as they were), then
for each mutation (all of them, or --max of them chosen with --seed):
  - `cryo show` and `show --json` must finish (bounded) and not crash;
  - `cryo restore` must finish (bounded) and either
      refuse:   exit non-zero with a message, leaving no process of the image,
                no /dev/shm/.cryo-* file and no new SysV segment; or
      restore:  the restored tree is dumped again (--leave-running) and the
                mutated field must read back as the mutated image has it
                (for the fields that read back in the baseline), then the
                workload checks its own state.
Outcomes (the summary counts them):
  refused                    good: refused with a message, nothing left
  faithful                   good: restored, the field reads back as recorded
  informational              fine: a field restore documents as ignored
  opaque                     fine: program content (registers, addresses,
                             data) restored as recorded, whatever the
                             program then does with it
  unobservable               restored, the field cannot be read back (not
                             stable in the baseline), the workload's check passed
  warned                     restored with a warning on stderr naming what
                             could not be made as recorded
  died                       restored, then the program died before it could be
                             read back (a limit or fd it lives without):
                             listed for review, not counted as a failure
  SILENT-MISRESTORE          restored, but the field reads back otherwise, or
                             cannot be read back and the workload's check failed
  LEFTOVER                   refused but left a process, file or segment
  HANG / CRASH / SHOW-*      cryo did not finish, or died of a signal

Run (root):
  mutate_campaign.py --cryo build/src/cli/cryo --workloads build/tests/workloads \\
      --tool build/tests/image_mutate [--workload tree --workload eventfds ...] \\
      [--max 300] [--seed 1] [--out results.jsonl]
Exit status 1 if any mutation had a bad outcome (SILENT-MISRESTORE, LEFTOVER,
HANG, CRASH, SHOW-*).
"""
import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import cryotest  # noqa: E402
import test_shm  # noqa: E402
from cryotest import pid_alive, proc_stat  # noqa: E402

BAD = ("SILENT-MISRESTORE", "LEFTOVER", "HANG", "CRASH", "SHOW-CRASH", "SHOW-HANG")

# Workloads: name -> extra arguments.
WORKLOADS = {
    "tree": [],
    "eventfds": [],
    "shm": [],
    "pty": [],
    "state": [],
    "threads": ["4"],
    "unixsk": [],
}

# Fields that are the program's own content: any value is restored as is and
# is the program's business (a register, an address, bytes in flight).
OPAQUE = [
    r"regs\.gpr\[(?!(17|18|20|21|22|23|24|25|26)\])\d+\]$", r"regs\.xsave$", r"\.raw$", r"\.handler$",
    r"\.restorer$", r"altstack_sp$", r"rseq_(addr|sig)$", r"robust_list$", r"clear_child_tid$",
    r"^mm\.", r"\.auxv", r"epoll\.targets\[\d+\]\.data$", r"sigev_value$", r"pipes\[\d+\]\.data$",
    r"master_unread$", r"slave_unread", r"mtime_ns$", r"checksum$",
    # Times left run on, and signals arrive, between the restore and the
    # re-dump: the program's business once restored.
    r"(value|interval)_(us|ns)$", r"timerfd\.(ticks|clock_ns)$", r"pending(\[\d+\])?$",
]
# Fields restore documents as ignored (docs/image-format.md "Ignored by restore").
INFORMATIONAL = [
    r"^(cryo_version|kernel_release|hostname|created_unix_ns|dump_mode)$", r"stored_pages$",
    r"inherited_pages$", r"\.file\.(dev|ino)$", r"\.rdev$", r"tty\.index$", r"objects\[\d+\]\.(dev|ino)$",
    r"overrun$", r"^files", r"exit_signal$", r"^fds\[\d+\]\.file\.(size|mtime_ns|mode)$",
    r"^vmas\[\d+\]\.file\.(mode|dev|ino)$",
    # Checked for private file mappings (a restore with another one is
    # refused); a shared one may have changed since (documented).
    r"^vmas\[\d+\]\.file\.size$",
    # What a restore compares the files on disk with (files changed since the
    # dump): a record cleared skips that check, the state restored is the same.
    r"^(cwd|root|exe)_file", r"content_xxh3$",
]


# Ids each dump hands out anew: what must come back is which objects share one.
ID_FIELDS = ("file_id", "pipe_id", "tty_id", "shm_object", "shmem_id")
# VmFlags the restore sets (the others follow from the mapping itself).
CONTROLLED_VM_FLAGS = {"rd", "wr", "ex", "sh", "ms", "gd", "mw", "dd", "dc", "hg", "nh", "wf", "mg"}


def vm_flag_set(text):
    """The controlled VmFlags of a `get` of a vm_flags list ("[x:6d72,...]")."""
    out = set()
    for item in text.strip("[]").split(","):
        if item.startswith("x:"):
            out.add(bytes.fromhex(item[2:]).decode("ascii", "replace"))
    return out & CONTROLLED_VM_FLAGS


def matches(patterns, path):
    return any(re.search(p, path) for p in patterns)


def sysv_ids(cryo_pid):
    """SysV segments the cryo `cryo_pid` created (other tests may run)."""
    ids = set()
    for line in (cryotest.read_text("/proc/sysvipc/shm", "") or "").splitlines()[1:]:
        w = line.split()
        if len(w) > 4 and int(w[4]) == cryo_pid:
            ids.add(int(w[1]))
    return ids


def shm_leftovers(cryo_pid):
    """Its temporaries (.cryo-restore-PID-STARTTIME-ID) under /dev/shm."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(".cryo-restore-%d-" % cryo_pid))
    except OSError:
        return []


class Campaign:
    def __init__(self, args, h):
        self.args = args
        self.h = h
        self.tool = os.path.abspath(args.tool)

    def tool_run(self, *a, timeout=30):
        r = subprocess.run([self.tool] + list(a), capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def get(self, d, f, p, canonical=True):
        return self.tool_run("get", d, f, p, *(["--canonical"] if canonical else []))[1]

    def groups(self, d, field):
        return self.tool_run("groups", d, field)[1]

    def reads_back(self, img0, base, work, redump, f, path, op):
        """(stable in the baseline, the mutated value reads back) for PATH."""
        def norm(v):  # an empty message, list or no message: the same
            return "" if v in ("<unset>", "<absent>", "x:", "[]") else v

        m = re.match(r"(.*vmas\[\d+\]\.vm_flags)", path)
        if m:
            lst = m.group(1)
            return (vm_flag_set(self.get(img0, f, lst)) == vm_flag_set(self.get(base, f, lst)),
                    vm_flag_set(self.get(work, f, lst)) == vm_flag_set(self.get(redump, f, lst)))
        if op in ("del", "dup"):
            # An element went or came: the elements of the list by what names
            # them (fd number, VMA range, id...), but [vsyscall], which the
            # kernel gives or not.
            lst = re.sub(r"\[\d+\]$", "", path)

            def items(d):
                rc, out, _ = self.tool_run("keys", d, f, lst)
                vsyscall = "start=%d " % 0xffffffffff600000
                return [i for i in out.splitlines() if not i.startswith(vsyscall)]
            return items(img0) == items(base), items(work) == items(redump)
        leaf = re.sub(r"\[\d+\]$", "", path).split(".")[-1]
        if leaf in ID_FIELDS:
            return (self.groups(img0, leaf) == self.groups(base, leaf),
                    self.groups(work, leaf) == self.groups(redump, leaf))
        return (norm(self.get(img0, f, path)) == norm(self.get(base, f, path)),
                norm(self.get(work, f, path)) == norm(self.get(redump, f, path)))

    def cryo(self, argv, timeout):
        """Runs cryo; returns (rc or 'HANG', stderr); self.last_pid is its pid."""
        err_path = os.path.join(self.h.tmp_root, "cryo.err")
        with open(err_path, "wb") as err:
            p = subprocess.Popen([self.h.cryo] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, close_fds=True)
            self.last_pid = p.pid
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
                rc = "HANG"
        self.h.reap_orphans()
        return rc, cryotest.read_text(err_path, "")

    def wait_gone(self, pids, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.h.reap_orphans(everything=True)
            left = [p for p in pids if proc_stat(p) is not None]
            if not left:
                return []
            time.sleep(0.02)
        return [p for p in pids if proc_stat(p) is not None]

    def kill_tree(self, pids):
        for p in pids:
            if pid_alive(p) and self.h._is_ours(p):
                for d in self.h._descendants(p) + [p]:
                    try:
                        os.kill(d, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        return self.wait_gone(pids)

    def restore(self, images):
        pidfile = os.path.join(self.h.tmp_root, "restore.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        rc, err = self.cryo(["restore", "-D", images, "--detach", "--pidfile", pidfile], self.args.timeout)
        return rc, err

    def redump(self, pid, out):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        return self.cryo(["dump", "-t", str(pid), "-D", out, "--leave-running"], self.args.timeout)

    def run_workload(self, name, results):
        if name != "shm":
            return self.run_started(name, results)
        # Its SysV segments and /dev/shm files outlive it: removed at the end.
        with test_shm.ShmObjects() as objects:
            return self.run_started(name, results, objects)

    def run_started(self, name, results, objects=None):
        h = self.h
        w = h.start_workload(name, *WORKLOADS[name])
        h.wait_ready(w)
        if objects is not None:
            objects.add(test_shm.read_objects(w))
        h.verify_ok(w, when="before dump")
        img0 = h.mkdir(name + "-img")
        h.dump(w.pid, img0)
        h.reap_original(w)
        pids = json.loads(self.get(img0, "inventory.img", "pids").replace("[", "[").strip() or "[]")
        root = pids[0]
        cryotest.wait_pids_gone(pids)
        # Baseline: what reads back after a plain restore.
        base = h.mkdir(name + "-base")
        rc, err = self.restore(img0)
        if rc != 0:
            raise RuntimeError("baseline restore of %s failed: %s" % (name, err))
        self.baseline_warns = "warning" in err
        rc, err = self.redump(root, base)
        if rc != 0:
            raise RuntimeError("baseline re-dump of %s failed: %s" % (name, err))
        rw = w.restored(root)
        h.verify_ok(rw, when="baseline")
        left = self.kill_tree(pids)
        if left:
            raise RuntimeError("baseline processes %s survive" % left)
        rc, out, err = self.tool_run("list", img0)
        sites = [tuple(line.split("\t")) for line in out.splitlines() if line.count("\t") == 2]
        rnd = random.Random("%s-%d" % (name, self.args.seed))
        if self.args.max and len(sites) > self.args.max:
            sites = rnd.sample(sites, self.args.max)
        print("%s: %d mutations (pids %s)" % (name, len(sites), pids), flush=True)
        work = os.path.join(h.tmp_root, "m")
        redump = os.path.join(h.tmp_root, "r")
        for i, (f, path, op) in enumerate(sites):
            res = self.one(name, img0, base, work, redump, pids, root, w, f, path, op)
            results.append(res)
            if self.args.out:
                with open(self.args.out, "a") as o:
                    o.write(json.dumps(res) + "\n")
            if res["outcome"] in BAD or self.args.verbose:
                print("  %-18s %s %s %s: %s" % (res["outcome"], f, path, op[:60], res.get("why", "")[:300]),
                      flush=True)
            if (i + 1) % 50 == 0:
                print("  %d/%d" % (i + 1, len(sites)), flush=True)

    def one(self, name, img0, base, work, redump, pids, root, w, f, path, op):
        res = {"workload": name, "file": f, "path": path, "op": op[:200]}
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(img0, work)
        rc, _, err = self.tool_run("apply", work, f, path, op)
        if rc != 0:
            res["outcome"] = "not-applicable"
            res["why"] = err
            return res
        for argv in (["show", work], ["show", work, "--json"]):
            src, serr = self.cryo(argv, 20)
            if src == "HANG":
                res.update(outcome="SHOW-HANG", why=" ".join(argv))
                return res
            if src < 0 or src > 1 or (src == 1 and "error" not in serr):
                res.update(outcome="SHOW-CRASH", why="%s -> %s %s" % (" ".join(argv), src, serr[-300:]))
                return res
        t0 = time.monotonic()
        rc, err = self.restore(work)
        cryo_pid = self.last_pid
        res["restore_s"] = round(time.monotonic() - t0, 3)
        if rc == "HANG" or (isinstance(rc, int) and rc < 0):
            self.kill_tree(pids)
            res.update(outcome="HANG" if rc == "HANG" else "CRASH", why=err[-300:])
            return res
        if rc != 0:
            left = self.wait_gone(pids, 5.0)
            files = shm_leftovers(cryo_pid)
            segs = sysv_ids(cryo_pid)
            if left or files or segs:
                self.kill_tree(left)
                res.update(outcome="LEFTOVER", why="processes %s files %s segments %s; %s" % (left, files, sorted(segs), err[-200:]))
            elif "error" not in err:
                res.update(outcome="CRASH", why="exit %s without a message" % rc)
            else:
                res.update(outcome="refused", why=err.strip().splitlines()[-1][-300:] if err.strip() else "")
            return res
        # Restored: read the field back, then let the workload check itself.
        root_file = f == "core-%d.img" % root
        # The root's parent is cryo; a session or group of the root led from
        # outside the image is cryo's (documented): informational.
        informational = matches(INFORMATIONAL, path) or (root_file and path in ("ppid", "sid", "pgid"))
        outcome = None
        warned = "warning" in err and not self.baseline_warns
        drc, derr = self.redump(root, redump)
        # The process of the mutated record died (no record, or a zombie's).
        core = "core-" + f.split("-", 1)[1] if "-" in f else None
        gone = drc == 0 and (self.get(redump, f, "", canonical=False) == "<no record>" or
                             (core is not None and self.get(redump, core, "zombie") == "1"))
        stable, same = self.reads_back(img0, base, work, redump, f, path, op) if drc == 0 and not gone else (False, False)
        back, want = (self.get(redump, f, path), self.get(work, f, path)) if drc == 0 else ("", "")
        try:
            line = self.h.verify(w.restored(root), timeout=10)
        except cryotest.TestFailure as e:
            line = "FAIL " + str(e)
        verified = line.startswith("OK ")
        self.kill_tree(pids)
        alive = drc == 0 and not gone
        if alive and same:
            outcome = "faithful"
        elif informational:
            outcome = "informational"
        elif matches(OPAQUE, path):
            outcome = "opaque"
        elif warned:
            outcome = "warned"
            res["why"] = [l for l in err.splitlines() if "warning" in l][0][-200:]
        elif alive and stable:
            outcome = "SILENT-MISRESTORE"
            res["why"] = "reads back %s, the image says %s" % (back[:80], want[:80])
        elif alive and verified:
            outcome = "unobservable"
        elif not alive:
            # Restored as recorded, then the program died of it (a limit, a
            # missing fd): reviewed by hand, not counted as a failure.
            outcome = "died"
            res["why"] = "re-dump: %s; check: %s" % ((derr or "gone").strip()[-150:], line[:150])
        else:
            outcome = "SILENT-MISRESTORE"
            res["why"] = "the field does not read back the same even without the change, and the workload's " \
                         "check failed: %s" % line[:150]
        res["outcome"] = outcome
        return res


def on_signal(signo, frame):
    raise cryotest.HarnessAbort("campaign got signal %d" % signo)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cryo", required=True)
    ap.add_argument("--workloads", required=True)
    ap.add_argument("--tool", required=True, help="the image_mutate binary")
    ap.add_argument("--workload", action="append", help="workloads to use (default: all)")
    ap.add_argument("--max", type=int, default=0, help="mutations per workload (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds a cryo run may take")
    ap.add_argument("--out", help="append one JSON line per mutation to this file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    cryotest._set_subreaper()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tmp = os.path.join("/tmp", "cryo-mutate-%d" % os.getpid())
    os.makedirs(tmp)
    h = cryotest.Harness(os.path.abspath(args.cryo), os.path.abspath(args.workloads), tmp)
    results = []
    c = Campaign(args, h)
    try:
        for name in args.workload or list(WORKLOADS):
            try:
                c.run_workload(name, results)
            finally:
                for p in h.cleanup():
                    print("cleanup: %s" % p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = collections.Counter(r["outcome"] for r in results)
    print("summary: %d mutations: %s" % (len(results), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    return 1 if any(counts[b] for b in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
