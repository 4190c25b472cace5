#!/usr/bin/python3
"""End-to-end tests of `cryo dump` (and `cryo show --json`).

Run: test_dump.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import (O_CLOEXEC, O_LARGEFILE, check, check_eq, fail, proc_fds,  # noqa: E402
                      proc_maps, proc_stat, proc_status, sigset_bits)

SA_RESTART = 0x10000000
PAGE = os.sysconf("SC_PAGE_SIZE")


def snapshot(pid):
    """What /proc says about pid, in the terms `cryo show --json` uses."""
    st = proc_status(pid)
    check(st is not None, "pid %d vanished" % pid)
    return {
        "maps": proc_maps(pid),
        "fds": proc_fds(pid),
        "status": st,
        "stat": proc_stat(pid),
    }


def comparable(snap, maps=True):
    """The parts of a snapshot that a leave-running dump must not change."""
    st = snap["status"]
    return {
        "maps": [(v["start"], v["end"], v["prot"], v["name"]) for v in snap["maps"]
                 if maps or v["name"].startswith("/")],
        "fds": {fd: (f["path"], f["pos"], f["flags"]) for fd, f in snap["fds"].items()},
        "SigBlk": st["SigBlk"],
        "SigIgn": st["SigIgn"],
        "SigCgt": st["SigCgt"],
        "usr1_pending": 10 in sigset_bits(st["SigPnd"]),
        "Threads": st["Threads"],
    }


def check_untouched(h, w, before, maps=True):
    """The process is running, not traced and looks as before the dump.
    maps=False compares only file-backed VMAs (for workloads such as the
    Python interpreter that may map anonymous memory at any time)."""
    after = snapshot(w.pid)
    state = after["stat"]["state"]
    check(state in ("R", "S"), "%s pid %d: expected state R/S after dump, actual %s"
          % (w.name, w.pid, state))
    check_eq(after["status"]["TracerPid"], "0", "%s: TracerPid after dump" % w.name)
    a, b = comparable(after, maps), comparable(before, maps)
    for k in b:
        if a[k] != b[k]:
            if k == "maps":
                sa, sb = set(a[k]), set(b[k])
                fail("%s: /proc/%d/maps changed by the dump: gone %s, new %s"
                     % (w.name, w.pid, sorted(sb - sa)[:5], sorted(sa - sb)[:5]))
            fail("%s: %s changed by the dump: before %r, after %r" % (w.name, k, b[k], a[k]))


def image_process(img, pid):
    check_eq(img.get("format_version"), 2, "image format_version")
    check_eq(img.get("root_pid"), pid, "image root_pid")
    procs = img.get("processes") or []
    check_eq(len(procs), 1, "number of processes in image")
    p = procs[0]
    check_eq(p.get("pid"), pid, "image process pid")
    return p


def check_vmas(p, snap, w, only_files=False):
    """Every VMA of /proc/PID/maps (but [vsyscall]) is in the image with
    the same start/end/prot; the image has no other VMA.  only_files=True
    checks just the file-backed VMAs of /proc (for processes whose anonymous
    memory may change between the snapshot and the dump)."""
    ivmas = {}
    for v in p["vmas"]:
        check(v["start"] not in ivmas, "image has two VMAs starting at 0x%x" % v["start"])
        ivmas[v["start"]] = v
    seen = set()
    problems = []
    for m in snap["maps"]:
        if m["name"] == "[vsyscall]" or (only_files and not m["name"].startswith("/")):
            continue
        v = ivmas.get(m["start"])
        if v is None:
            problems.append("VMA 0x%x-0x%x %s %s missing from image"
                            % (m["start"], m["end"], m["prot"], m["name"]))
            continue
        seen.add(m["start"])
        if v["end"] != m["end"] or v["prot"] != m["prot"]:
            problems.append("VMA at 0x%x: /proc says end 0x%x %s, image says end 0x%x %s"
                            % (m["start"], m["end"], m["prot"], v["end"], v["prot"]))
        if m["name"].startswith("/") and v.get("name") != m["name"]:
            problems.append("VMA at 0x%x: /proc name %r, image name %r"
                            % (m["start"], m["name"], v.get("name")))
        npages = (m["end"] - m["start"]) // PAGE
        if not 0 <= v.get("pages", -1) <= npages:
            problems.append("VMA at 0x%x: %d pages stored for a %d-page VMA"
                            % (m["start"], v.get("pages", -1), npages))
    for start, v in ivmas.items():
        if only_files:
            break
        if start not in seen and v.get("name") != "[vsyscall]":
            problems.append("image VMA 0x%x-0x%x %s %r not in /proc/%d/maps"
                            % (start, v["end"], v["prot"], v.get("name"), w.pid))
    check(not problems, "VMAs differ (%d problems): %s" % (len(problems), "; ".join(problems[:8])))
    return ivmas


def check_fds(p, snap):
    ifds = {f["fd"]: f for f in p["fds"]}
    check_eq(sorted(ifds), sorted(snap["fds"]), "fd numbers (image vs /proc/PID/fd)")
    for fd, pf in snap["fds"].items():
        f = ifds[fd]
        check_eq(f.get("path"), pf["path"], "fd %d path" % fd)
        check_eq(f.get("kind"), pf["kind"], "fd %d kind" % fd)
        check_eq(f.get("pos"), pf["pos"], "fd %d pos (fdinfo)" % fd)
        check_eq(f.get("cloexec"), bool(pf["flags"] & O_CLOEXEC), "fd %d cloexec" % fd)
        mask = ~(O_CLOEXEC | O_LARGEFILE)
        check_eq(oct(f.get("flags", -1) & mask), oct(pf["flags"] & mask),
                 "fd %d open flags (without O_CLOEXEC/O_LARGEFILE)" % fd)


def mask_bits(v):
    return {i + 1 for i in range(64) if v >> i & 1}


def check_signals(p, snap):
    s = p["signals"]
    st = snap["status"]
    acts = {a["sig"]: a for a in s["actions"]}
    usr1 = acts.get(signal.SIGUSR1)
    check(usr1 is not None and usr1["handler"] > 1,
          "SIGUSR1 action: expected a handler address, actual %r" % usr1)
    check(usr1["flags"] & SA_RESTART, "SIGUSR1 flags 0x%x lack SA_RESTART" % usr1["flags"])
    check_eq(mask_bits(usr1["mask"]), {signal.SIGHUP, signal.SIGUSR2}, "SIGUSR1 sa_mask signals")
    term = acts.get(signal.SIGTERM)
    check(term is not None and term["handler"] == 1,
          "SIGTERM action: expected handler 1 (SIG_IGN), actual %r" % term)
    alrm = acts.get(signal.SIGALRM)
    check(alrm is not None and alrm["handler"] > 1,
          "SIGALRM action: expected a handler address, actual %r" % alrm)
    check_eq(set(acts), sigset_bits(st["SigCgt"]) | sigset_bits(st["SigIgn"]),
             "signals with non-default actions (image vs SigCgt|SigIgn)")
    ign = {a["sig"] for a in s["actions"] if a["handler"] == 1}
    check_eq(ign, sigset_bits(st["SigIgn"]), "ignored signals (image vs SigIgn)")
    check_eq(mask_bits(s["blocked"]), sigset_bits(st["SigBlk"]), "blocked signals")
    check(signal.SIGUSR1 in s["pending"], "SIGUSR1 not in image pending %r" % s["pending"])
    # SIGALRM (50 ms itimer) can be pending for an instant: ignore it
    check_eq(set(s["pending"]) - {signal.SIGALRM},
             sigset_bits(st["SigPnd"]) - {signal.SIGALRM}, "thread-pending signals")
    check_eq(set(s["shared_pending"]) - {signal.SIGALRM},
             sigset_bits(st["ShdPnd"]) - {signal.SIGALRM}, "shared-pending signals")


def check_registers(p, ivmas):
    r = p["registers"]

    def vma_of(addr):
        for v in ivmas.values():
            if v["start"] <= addr < v["end"]:
                return v
        return None

    v = vma_of(r["rip"])
    check(v is not None and v["prot"][2] == "x",
          "rip 0x%x not in an executable VMA (%r)" % (r["rip"], v))
    v = vma_of(r["rsp"])
    check(v is not None and v["prot"][:2] == "rw",
          "rsp 0x%x not in a writable VMA (%r)" % (r["rsp"], v))
    check(r["xsave_size"] >= 576, "xsave_size %d < 576 (legacy area + header)" % r["xsave_size"])
    check(isinstance(r["xfeatures"], int), "xfeatures is not an int: %r" % r["xfeatures"])


# ------------------------------------------------------------------ tests

def test_leave_running_state(h):
    w = h.start_workload("state")
    h.wait_ready(w)
    lay = h.read_layout(w)
    if lay.get("anon_named") != "1":
        h.note("kernel does not support PR_SET_VMA_ANON_NAME: the 2000-page VMA is unnamed "
               "and located by address")
    before = snapshot(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    check_untouched(h, w, before)

    img = h.show_json(images)
    p = image_process(img, w.pid)
    check_eq(p.get("ppid"), os.getpid(), "image ppid")
    check_eq(p.get("pgid"), w.pid, "image pgid (own session)")
    check_eq(p.get("sid"), w.pid, "image sid (own session)")
    check_eq(p.get("comm"), "state", "image comm")
    check_eq(os.path.realpath(p.get("exe", "")), os.path.realpath(h.workload_path("state")),
             "image exe")
    check_eq(p.get("threads"), 1, "image threads")

    ivmas = check_vmas(p, before, w)
    anon_start, anon_end = int(lay["anon_start"], 16), int(lay["anon_end"], 16)
    v = ivmas.get(anon_start)
    check(v is not None and v["end"] == anon_end,
          "no image VMA exactly covering the 2000-page anon mapping 0x%x-0x%x" % (anon_start, anon_end))
    if lay.get("anon_named") == "1":
        check_eq(v.get("name"), "[anon:cryo-test-anon]", "name of the anon VMA")
    check_eq(v["pages"], 1000, "pages stored for the anon VMA (even pages touched only)")
    # guard pages around it: PROT_NONE, never touched (a guard may have
    # merged with a neighbouring guard)
    for g in (anon_start - PAGE, anon_end):
        gv = [v for v in ivmas.values() if v["start"] <= g < v["end"]]
        check(gv and gv[0]["prot"] == "---p",
              "guard page at 0x%x: expected a ---p VMA, actual %r" % (g, gv))
        check_eq(gv[0]["pages"], 0, "pages stored for PROT_NONE guard VMA at 0x%x" % g)
    # the 32-page region, all written, split rw / r-- / rw by mprotect
    ro_start, ro_end = int(lay["ro_start"], 16), int(lay["ro_end"], 16)
    ro_lo, ro_hi = int(lay["ro_prot_start"], 16), int(lay["ro_prot_end"], 16)
    for s, e, prot in ((ro_start, ro_lo, "rw-p"), (ro_lo, ro_hi, "r--p"), (ro_hi, ro_end, "rw-p")):
        rv = ivmas.get(s)
        check(rv is not None and rv["end"] == e and rv["prot"] == prot,
              "mprotect-split VMA 0x%x-0x%x %s: image has %r" % (s, e, prot, rv))
        check_eq(rv["pages"], (e - s) // PAGE, "pages stored for written VMA at 0x%x" % s)
    # private file mapping: at least the 5 dirtied pages are in the image
    pv = ivmas.get(int(lay["priv_start"], 16))
    check(pv is not None and 5 <= pv["pages"] <= 16,
          "private file mapping: expected 5..16 pages stored (5 dirtied), image has %r" % pv)

    check_fds(p, before)
    check_signals(p, before)
    check_registers(p, ivmas)

    # leave-running means untouched: the process still passes its checks
    h.verify_ok(w, when="after dump --leave-running")
    h.verify_ok(w, exit=True, when="after dump --leave-running (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "state exit status")


def test_kill_mode_sleep(h):
    w = h.start_workload("sleep")
    images = h.mkdir("img")
    h.dump(w.pid, images)
    sig = h.reap_original(w)
    check(not os.path.exists("/proc/%d" % w.pid) or proc_stat(w.pid)["comm"] != "sleep",
          "sleep pid %d still exists after kill-mode dump" % w.pid)
    check(os.listdir(images), "image directory %s is empty" % images)
    img = h.show_json(images)
    p = image_process(img, w.pid)
    check_eq(p.get("comm"), "sleep", "image comm")
    check_eq(os.path.realpath(p.get("exe", "")), os.path.realpath("/bin/sleep"), "image exe")
    check_eq(sorted(f["fd"] for f in p["fds"]), [0, 1, 2], "sleep's fds in image")
    check(p["vmas"], "no VMAs in image")
    h.note("original killed by signal %d" % sig)


def test_kill_mode_python(h):
    w = h.start_workload("loop.py")
    h.wait_ready(w)
    h.verify_ok(w, when="before dump")
    before = snapshot(w.pid)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    check(not os.path.exists("/proc/%d" % w.pid), "pid %d still exists after dump" % w.pid)
    img = h.show_json(images)
    p = image_process(img, w.pid)
    check_eq(p.get("comm"), "python3", "image comm")
    check_eq(os.path.realpath(p.get("exe", "")), os.path.realpath(cryotest.PYTHON), "image exe")
    check_vmas(p, before, w, only_files=True)
    check_fds(p, before)


def expect_dump_error(h, pid, images, keywords, mkdir=True, leave_running=False):
    r = h.dump(pid, images, leave_running=leave_running, expect_ok=False, mkdir=mkdir)
    check(r.rc != 0, "dump of pid %d into %s unexpectedly succeeded\n%s" % (pid, images, r.describe()))
    check(r.rc != "TIMEOUT", "dump timed out")
    msg = r.message.lower()
    check(msg, "dump failed (status %s) without an error message on stderr\n%s" % (r.rc, r.describe()))
    check(any(k.lower() in msg for k in keywords),
          "dump error message does not name the problem (expected one of %r)\n%s"
          % (keywords, r.describe()))
    return r


def test_error_nonexistent_pid(h):
    pid = cryotest.free_pid()
    expect_dump_error(h, pid, h.mkdir("img"),
                      [str(pid), "no such", "not exist", "esrch", "not found"])


def test_error_own_parent(h):
    me = os.getpid()
    # --leave-running: should cryo wrongly go ahead, at least it must not
    # kill the harness
    expect_dump_error(h, me, h.mkdir("img"),
                      [str(me), "parent", "ancestor", "itself", "own", "self"],
                      leave_running=True)
    st = proc_status(me)
    check_eq(st["TracerPid"], "0", "harness TracerPid after the refused dump")
    check_eq(st["Threads"], "1", "harness threads after the refused dump")


def test_error_kernel_thread(h):
    pid = cryotest.find_kernel_thread()
    check(pid is not None, "no kernel thread visible in /proc (expected kthreadd as pid 2)")
    comm = proc_stat(pid)["comm"]
    expect_dump_error(h, pid, h.mkdir("img"),
                      [str(pid), "kernel", "kthread", comm])
    check(proc_stat(pid) is not None and proc_stat(pid)["state"] != "T",
          "kernel thread %d disturbed" % pid)


def test_error_unwritable_images_dir(h):
    w = h.start_workload("state")
    h.wait_ready(w)
    before = snapshot(w.pid)
    blocker = os.path.join(h.mkdir("blocker"), "regular-file")
    with open(blocker, "w") as f:
        f.write("not a directory\n")
    images = os.path.join(blocker, "images")
    expect_dump_error(h, w.pid, images,
                      [images, blocker, "directory", "enotdir", "not a dir"], mkdir=False)
    check_untouched(h, w, before)
    h.verify_ok(w, exit=True, when="after the failed dump")
    check_eq(h.wait_exit(w), ("exit", 0), "state exit status")


def test_error_disk_full_during_page_copy(h):
    """The image directory is a 4 MiB tmpfs: the page file (8 MiB for the state
    workload) fills it in the middle of the page copy. The dump fails naming
    the full file and the process runs on untouched."""
    w = h.start_workload("state")
    h.wait_ready(w)
    before = snapshot(w.pid)
    mnt = h.mkdir("small-fs")
    r = cryotest.subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mnt],
                                stdin=cryotest.subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "mount of a 4 MiB tmpfs on %s failed: %s" % (mnt, r.stderr.strip()))
    try:
        images = os.path.join(mnt, "img")
        r = expect_dump_error(h, w.pid, images, ["no space left"])
        check("pages-%d.img" % w.pid in r.message, "error should name the page file: %s" % r.message)
        check_untouched(h, w, before)
        h.verify_ok(w, when="after the dump that filled the disk")
    finally:
        u = cryotest.subprocess.run(["umount", mnt], stdin=cryotest.subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=30)
    check(u.returncode == 0, "umount %s failed: %s" % (mnt, u.stderr.strip()))
    h.verify_ok(w, exit=True, when="after the failed dump (exit)")
    check_eq(h.wait_exit(w), ("exit", 0), "state exit status")


def test_shell_tree_leave_running(h):
    """A shell and its child are dumped together; both run on untouched."""
    w = h.start("sh", ["/bin/sh", "-c", "sleep 1000 & wait"])
    deadline = cryotest.time.monotonic() + 10
    children = []
    while cryotest.time.monotonic() < deadline and not children:
        children = cryotest.read_text("/proc/%d/task/%d/children" % (w.pid, w.pid), "").split()
        cryotest.time.sleep(0.02)
    check(children, "sh did not start its child")
    child = int(children[0])
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    procs = {p["pid"]: p for p in h.show_json(images)["processes"]}
    check_eq(sorted(procs), sorted([w.pid, child]), "processes in the image")
    check_eq(procs[child]["ppid"], w.pid, "parent of the child in the image")
    for pid in (w.pid, child):
        st = proc_stat(pid)
        check(st is not None and st["state"] == "S", "pid %d disturbed by the dump: %r" % (pid, st))
    h.cleanup_one(child)


def test_check(h):
    r = h.run_cryo(["check"], log=False, tag="check")
    check_eq(r.rc, 0, "cryo check exit status (this kernel supports checkpointing)\n"
             + r.describe())


def test_selftest_state_detects_corruption(h):
    """No cryo involved: the state workload's verify must be able to fail."""
    w = h.start_workload("state")
    h.wait_ready(w)
    lay = h.read_layout(w)
    h.verify_ok(w, when="baseline")
    odd = int(lay["anon_start"], 16) + PAGE * 777
    cryotest.poke(w.pid, odd + 100, b"\x01")
    line = h.verify(w)
    check(line.startswith("FAIL") and "odd page 777" in line,
          "verify after poking a never-written anon page: expected FAIL naming odd page 777, "
          "actual: %s" % line)
    cryotest.poke(w.pid, odd + 100, b"\x00")
    h.verify_ok(w, when="after undoing the memory corruption")
    with open(w.path("data.dat"), "r+b") as f:
        f.seek(5000)
        f.write(b"\xff\xfe")
    line = h.verify(w, exit=True)
    check(line.startswith("FAIL") and "data.dat content" in line,
          "verify after changing data.dat on disk: expected FAIL naming data.dat, actual: %s" % line)
    check_eq(h.wait_exit(w), ("exit", 1), "state exit status after a failed verify")


TESTS = [
    test_check,
    test_selftest_state_detects_corruption,
    test_leave_running_state,
    test_kill_mode_sleep,
    test_kill_mode_python,
    test_error_nonexistent_pid,
    test_error_own_parent,
    test_error_kernel_thread,
    test_error_unwritable_images_dir,
    test_error_disk_full_during_page_copy,
    test_shell_tree_leave_running,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
