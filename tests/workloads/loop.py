#!/usr/bin/python3
"""loop.py: a Python interpreter workload for cryo end-to-end tests.

Usage: /usr/bin/python3 loop.py CTL_DIR [--thread]

Same control protocol as the C workloads (see wl_common.h): writes
CTL_DIR/ready (pid) atomically, polls every ~10 ms for CTL_DIR/verify, then
writes CTL_DIR/result "OK ..." / "FAIL ..." and exits 0/1 if verify said
"exit".

State checked on verify:
  - the pid is unchanged;
  - the loop counter increased since the previous verify (or since start);
  - a dict of 500 entries: values[k] == (k * 7919 + gen[k]) where gen[k] is the
    last counter value that updated the slot, kept in a second dict;
  - a 200000-element list built at start and a bytes object keep their
    content (sum / hash compared with values computed at start);
  - sys.argv, the cwd and os.getpid() are unchanged.

--thread starts an extra (sleeping) thread: used to check that cryo refuses
to dump a multi-threaded process.
"""
import hashlib
import os
import sys
import threading
import time


def write_atomic(ctl, name, content):
    tmp = os.path.join(ctl, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(ctl, name))


def poll_verify(ctl):
    path = os.path.join(ctl, "verify")
    try:
        with open(path) as f:
            req = f.read().strip()
    except FileNotFoundError:
        return None
    os.unlink(path)
    return req


def main():
    if len(sys.argv) < 2:
        print("usage: loop.py CTL_DIR [--thread]", file=sys.stderr)
        return 2
    ctl = sys.argv[1]
    my_pid = os.getpid()
    my_argv = list(sys.argv)
    my_cwd = os.getcwd()

    if "--thread" in sys.argv[2:]:
        t = threading.Thread(target=lambda: time.sleep(1e6), daemon=True)
        t.start()

    big = [i * i % 1000003 for i in range(200000)]
    big_sum = sum(big)
    blob = bytes((i * 131 + 7) % 256 for i in range(1 << 16))
    blob_hash = hashlib.sha256(blob).hexdigest()

    counter = 0
    values = {}
    gen = {}
    prev_verified = 0
    verifies = 0

    write_atomic(ctl, "ready", "%d\n" % my_pid)
    while True:
        counter += 1
        k = (counter * 37) % 500
        values[k] = k * 7919 + counter
        gen[k] = counter
        time.sleep(0.01)
        req = poll_verify(ctl)
        if req is None:
            continue
        verifies += 1
        fails = []
        checks = 0

        def check(ok, msg):
            nonlocal checks
            checks += 1
            if not ok:
                fails.append(msg)

        check(os.getpid() == my_pid,
              "pid expected %d actual %d" % (my_pid, os.getpid()))
        check(counter > prev_verified,
              "counter expected > %d actual %d" % (prev_verified, counter))
        bad = [k for k in values if values[k] != k * 7919 + gen[k]]
        check(not bad, "values[%r] expected %r actual %r" % (
            bad[0], bad[0] * 7919 + gen[bad[0]], values[bad[0]]) if bad else "")
        check(len(values) == min(500, counter),
              "len(values) expected %d actual %d" % (min(500, counter), len(values)))
        s = sum(big)
        check(len(big) == 200000 and s == big_sum,
              "big list sum expected %d actual %d (len %d)" % (big_sum, s, len(big)))
        h = hashlib.sha256(blob).hexdigest()
        check(h == blob_hash, "blob sha256 expected %s actual %s" % (blob_hash, h))
        check(sys.argv == my_argv, "argv expected %r actual %r" % (my_argv, sys.argv))
        cwd = os.getcwd()
        check(cwd == my_cwd, "cwd expected %r actual %r" % (my_cwd, cwd))

        if fails:
            line = "FAIL %d of %d checks failed: %s\n" % (len(fails), checks, "; ".join(fails))
        else:
            line = "OK loop.py checks=%d counter=%d prev=%d verifies=%d pid=%d\n" % (
                checks, counter, prev_verified, verifies, my_pid)
        write_atomic(ctl, "result", line)
        prev_verified = counter
        if req == "exit":
            return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
