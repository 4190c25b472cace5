#!/usr/bin/python3
"""End-to-end tests of the dump's audit ("restored or refused"): a process
holding a kind of state cryo does not restore (tests/workloads/audit.c, one
mode per kind) is refused at dump, by name, before anything is written: the
message names the pid and the state, the images directory is left exactly as
it was, and the process runs on untouched (it checks its own state after).
Several refusals come all at once, one a line. State cryo restores
(coredump_filter, MAP_NORESERVE, mlock, madvise advice, MAP_DROPPABLE, mseal,
guard regions, THP disable, membarrier registrations) goes through and comes back. Workloads of
the other suites dump with every item classified (the debug log's summary),
and `cryo check -t PID` tells the same without dumping.

Run: test_audit.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, proc_stat, proc_status  # noqa: E402

# mode -> words the refusal must contain (besides "pid N"). A state cryo
# learns to restore leaves this list for a test of its own (file locks, fd
# owners, shared fd tables: test_locks.py; job control, per-process
# attributes, cgroups: test_taskstate.py).
REFUSED = [
    ("flock_mapped", ["holds a FLOCK lock on inode", "/proc/locks"]),
    ("thread_files", ["thread ", "has a fd table of its own"]),
    ("mdwe", ["PR_SET_MDWE"]),
    ("numa", ["NUMA memory policy \"bind"]),
    ("ksm", ["PR_SET_MEMORY_MERGE"]),
    ("mce", ["PR_MCE_KILL"]),
    ("sem_undo", ["SEM_UNDO"]),
    # Strict mode kills on the remote calls cryo makes in the thread, which
    # it would make on its own were cryo killed (tree/seccomp.h).
    ("seccomp_thread", ["thread ", "seccomp strict mode would kill", "cryo's injected code needs"]),
]


# State cryo restores: mode -> the image feature it needs.
RESTORED = {
    "coredump": "proc-attrs",
    "noreserve": "map-noreserve",
    "mlock": "vma-attributes",
    "lockonfault": "vma-attributes",
    "madv_random": "vma-attributes",
    "madv_sequential": "vma-attributes",
    "droppable": "vma-attributes",
    "mseal": "vma-attributes",
    "guard": "guard-regions",  # test_guards.py for the rest
    "thp": "mm-attributes",
    "membarrier": "mm-attributes",
    "seccomp": "seccomp",
    "netns": "net-ns",  # its own network namespace, lo down (test_netns.py for the rest)
    "timens_children": "time-ns",  # its children's own time namespace (test_timens.py for the rest)
}


def start(h, mode):
    w = h.start_workload("audit", mode)
    h.wait_ready(w)
    if mode == "stopped":
        h.wait_state(w.pid, "T")
    return w


def remove_semaphore(w):
    semid = cryotest.read_text(w.path("semid"))
    if semid and semid.strip().isdigit():
        subprocess.run(["ipcrm", "-s", semid.strip()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def expect_refused(h, w, words, args=("dump",)):
    """Dump (or `check -t`) into a directory holding one file: refused with
    `words` and "pid N" in one message, the directory as it was, the process
    neither traced nor disturbed."""
    images = h.mkdir("img")
    with open(os.path.join(images, "before"), "w") as f:
        f.write("left by the test\n")
    stopped = proc_stat(w.pid)["state"] == "T"
    if args[0] == "dump":
        r = h.dump(w.pid, images, expect_ok=False)
    else:
        r = h.run_cryo(list(args) + ["-t", str(w.pid)])
    check(r.rc != 0, "%s of pid %d succeeded\n%s" % (args[0], w.pid, r.describe()))
    msg = r.message + r.stdout
    for part in ["pid %d" % w.pid] + list(words):
        check(part in msg, "the refusal should name %r:\n%s" % (part, r.describe()))
    check_eq(sorted(os.listdir(images)), ["before"], "files of the images directory after the refused dump")
    st = proc_stat(w.pid)
    check(st is not None and (st["state"] == "T" if stopped else st["state"] in ("S", "R")),
          "state after the refused dump: %r (%s before)" % (st, "stopped" if stopped else "running"))
    check_eq(proc_status(w.pid)["TracerPid"], "0", "TracerPid after the refused dump")
    return r


def refused_test(mode, words):
    def test(h):
        w = start(h, mode)
        try:
            expect_refused(h, w, words)
            if mode == "stopped":
                os.kill(w.pid, signal.SIGCONT)
            h.verify_ok(w, when="after the refused dump")
            h.verify_ok(w, exit=True, when="(exit)")
            check_eq(h.wait_exit(w), ("exit", 0), "exit status")
        finally:
            remove_semaphore(w)
    test.__name__ = "test_refuse_" + mode
    return test


def test_refuse_several_at_once(h):
    """Every refusal is reported, each on its own line, in one message."""
    w = start(h, "flock_mapped+mce+ksm")
    r = expect_refused(h, w, ["holds a FLOCK lock on inode", "PR_MCE_KILL", "PR_SET_MEMORY_MERGE"])
    lines = [l for l in r.message.splitlines() if ("pid %d" % w.pid) in l]
    check(len(lines) >= 3, "expected each refusal on a line of its own:\n%s" % r.message)
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def test_refuse_nonexistent_dir_stays_absent(h):
    """A refused dump does not even create the images directory."""
    w = start(h, "mce")
    images = os.path.join(h.mkdir("parent"), "img")
    r = h.dump(w.pid, images, expect_ok=False, mkdir=False)
    check(r.rc != 0, "dump of a process with PR_MCE_KILL set succeeded")
    check(not os.path.exists(images), "the refused dump created %s" % images)
    h.verify_ok(w, exit=True, when="after the refused dump")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


def restored_test(mode):
    """State cryo restores: dumped (kill mode), restored, checked by the
    process itself."""
    def test(h):
        w = start(h, mode)
        h.verify_ok(w, when="before the dump")
        images = h.mkdir("img")
        h.dump(w.pid, images)
        h.reap_original(w)
        feature = RESTORED[mode]
        h.check_feature(images, feature)
        r = h.restore(images, detach=True, expected_pid=w.pid)
        rw = w.restored(r.pid)
        h.verify_ok(rw, when="after restore")
        h.verify_ok(rw, exit=True, when="after restore (exit)")
        check_eq(h.wait_exit(rw), ("exit", 0), "restored exit status")
    test.__name__ = "test_restore_" + mode
    return test


def audit_summary(r, pid):
    """The audit's debug summary for `pid` in a cryo log."""
    lines = [l for l in (r.log or "").splitlines() if " audit: " in l and ("pid %d" % pid) in l]
    check(lines, "no audit summary for pid %d in the log\n%s" % (pid, r.describe()))
    return lines


def test_workloads_classified_without_refusal(h):
    """Workloads of the other suites: every item classified (sources listed
    in the debug log), nothing refused, and the dump goes through."""
    for name, args in [("state", []), ("threads", ["8"]), ("tree", ["4"]), ("eventfds", []), ("loop.py", ["--thread"])]:
        w = h.start_workload(name, *args)
        h.wait_ready(w)
        images = h.mkdir("img")
        r = h.dump(w.pid, images, leave_running=True)
        lines = audit_summary(r, w.pid)
        text = "\n".join(lines)
        check("items classified" in text and "REFUSED" not in text, "%s: audit summary:\n%s" % (name, text))
        for source in ["status:", "stat:", "VmFlags:", "smaps:", "fdinfo:", "ns:", "cgroup:", "seize:", "remote:",
                       "/proc/PID:"]:
            check(source in text, "%s: no %r items in the audit summary:\n%s" % (name, source, text))
        h.verify_ok(w, when="after a dump left running")
        h.kill_and_reap(w)


def test_check_command(h):
    """`cryo check -t PID` says what a dump would refuse, and dumps nothing."""
    w = start(h, "plain")
    r = h.run_cryo(["check", "-t", str(w.pid)])
    check_eq(r.rc, 0, "cryo check -t of a plain process\n%s" % r.describe())
    check("can be checkpointed" in r.stdout, "check output:\n%s" % r.describe())
    h.verify_ok(w, exit=True, when="after cryo check")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")
    w = start(h, "mce")
    r = expect_refused(h, w, ["PR_MCE_KILL"], args=("check",))
    check("refused:" in r.stdout, "check output lists the refusals:\n%s" % r.describe())
    r = h.run_cryo(["check", "-t", str(w.pid), "--all"])
    check("PR_MCE_KILL" in r.stdout and "REFUSED" in r.stdout and "VmFlags" in r.stdout,
          "check --all lists every item:\n%s" % r.describe())
    h.verify_ok(w, exit=True, when="after cryo check")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status")


TESTS = [refused_test(mode, words) for mode, words in REFUSED] + [
    test_refuse_several_at_once,
    test_refuse_nonexistent_dir_stays_absent,
] + [restored_test(mode) for mode in RESTORED] + [
    test_workloads_classified_without_refusal,
    test_check_command,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
