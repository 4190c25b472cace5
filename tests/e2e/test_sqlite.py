#!/usr/bin/python3
"""sqlite mid-transaction: a program in BEGIN IMMEDIATE with a row inserted and
not committed is checkpointed and restored; its locks come back with it.

Two programs: the sqlite3 command-line shell (fed through a pipe by a small
Python parent, both in the tree) and a Python program (the sqlite3 module).
After the restore an outside writer that does not wait fails with "database is
locked", and one that waits stays blocked until the restored program commits,
then succeeds; at the end every committed row is there (the restored
program's and the outside writer's) and the database is intact. Kill mode, and
rewind: a leave-running dump, the original ends without committing, then the
image is restored (if the original rolled back, its journal is gone and the
restore fails, saying so). Without file locks in the image the outside writer
gets in at once, and a committed row is lost.

Run: test_sqlite.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import PYTHON, check, check_eq  # noqa: E402

SQLITE = "/usr/bin/sqlite3"

# Waits for <ctl>/commit or <ctl>/rollback, ends its transaction so, writes
# <ctl>/done and exits.
COMMON = r"""
import os, sys, time
db, ctl = sys.argv[1], sys.argv[2]

def put(name, text):
    with open(ctl + "/" + name + ".tmp", "w") as f:
        f.write(text)
    os.rename(ctl + "/" + name + ".tmp", ctl + "/" + name)

def wait_order():
    while True:
        for order in ("commit", "rollback", "exit"):
            try:
                os.unlink(ctl + "/" + order)
                return order
            except FileNotFoundError:
                pass
        time.sleep(0.01)
"""

PROGRAM_PY = COMMON + r"""
import sqlite3
c = sqlite3.connect(db, isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO t VALUES('python')")
put("ready", str(os.getpid()))
order = wait_order()
if order == "exit":
    os._exit(0)  # no rollback: the journal stays, hot, as after a crash
c.execute(order.upper())
put("done", order + " " + ",".join(r[0] for r in c.execute("SELECT v FROM t ORDER BY v")))
"""

PROGRAM_CLI = COMMON + r"""
import subprocess
# A busy timeout, as Python's sqlite3 has by default: its COMMIT waits while
# the outside writer that waits for it holds a SHARED lock for a moment
# (without one, "database is locked" at once: a race of the test, not cryo's).
shell = subprocess.Popen([sys.argv[3], "-bail", "-cmd", ".timeout 30000", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, close_fds=True)
def run(sql, marker):
    shell.stdin.write((sql + "\nSELECT '" + marker + "';\n").encode())
    shell.stdin.flush()
    out = b""
    while not out.endswith(marker.encode() + b"\n"):
        chunk = shell.stdout.read1(4096)
        if not chunk:
            sys.exit("sqlite3 ended: " + out.decode())
        out += chunk
    return out.decode()
run("BEGIN IMMEDIATE;\nINSERT INTO t VALUES('cli');", "in-transaction")
put("shell", str(shell.pid))
put("ready", str(os.getpid()))
order = wait_order()
if order == "exit":
    shell.kill()  # no rollback: the journal stays, hot, as after a crash
    shell.wait()
    os._exit(0)
out = run(order.upper() + ";\nSELECT group_concat(v) FROM (SELECT v FROM t ORDER BY v);", "ended")
shell.stdin.write(b".quit\n")
shell.stdin.close()
status = shell.wait()
put("done", order + " " + out.splitlines()[0] + (" shell exit %d" % status if status else ""))
"""


def sql(db, statement, wait_ms=0):
    """Runs one statement with the sqlite3 shell; returns (status, output)."""
    argv = [SQLITE, "-bail"] + (["-cmd", ".timeout %d" % wait_ms] if wait_ms else []) + [db, statement]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    return p.returncode, (p.stdout + p.stderr).decode().strip()


def start_program(h, kind):
    ctl = h.mkdir("sqlite-" + kind)
    db = os.path.join(ctl, "test.db")
    status, out = sql(db, "CREATE TABLE t(v TEXT); INSERT INTO t VALUES('before');")
    check_eq((status, out), (0, ""), "creating the database")
    script = os.path.join(ctl, "program.py")
    with open(script, "w") as f:
        f.write(PROGRAM_PY if kind == "python" else PROGRAM_CLI)
    argv = [PYTHON, script, db, ctl] + ([SQLITE] if kind == "cli" else [])
    w = h.start("sqlite-" + kind, argv, ctl)
    h.wait_ready(w, timeout=30)
    pids = [w.pid]
    if kind == "cli":
        pids.append(int(cryotest.read_text(w.path("shell")).strip()))
    return w, db, pids


def order(w, what):
    with open(w.path(what + ".tmp"), "w") as f:
        f.write(what)
    os.rename(w.path(what + ".tmp"), w.path(what))


def wait_done(w, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        txt = cryotest.read_text(w.path("done"))
        if txt:
            os.unlink(w.path("done"))
            return txt.strip()
        time.sleep(0.01)
    cryotest.fail("%s: no done file within %.0fs; stderr: %s" % (w.name, timeout, w.stderr()[-2000:]))


def check_restored_transaction(h, w, db, row):
    """The restored program holds its transaction: an outside writer is
    refused (busy) or waits until it commits; then every row is there."""
    status, out = sql(db, "INSERT INTO t VALUES('outside-nowait')")
    check(status != 0 and "locked" in out,
          "an outside writer got in while the restored program is in its transaction: status %d, %r" % (status, out))
    waiting = subprocess.Popen([SQLITE, "-bail", "-cmd", ".timeout 60000", db, "INSERT INTO t VALUES('outside')"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               close_fds=True)
    h.tracked_pids.append(waiting.pid)
    try:
        # It tries at once and retries while the lock is held; the rows
        # visible outside are still the committed ones only.
        status, out = sql(db, "SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY v)", wait_ms=60000)
        check_eq((status, out), (0, "before"), "rows visible outside during the restored transaction")
        check(waiting.poll() is None, "the waiting outside writer finished before the commit: %r"
              % (waiting.stdout.read().decode() if waiting.poll() is not None else ""))
        order(w, "commit")
        done = wait_done(w)
        # (The waiting writer may get in between its COMMIT and its SELECT.)
        check(done in ("commit " + ",".join(sorted(["before", row])),
                       "commit " + ",".join(sorted(["before", row, "outside"]))),
              "the restored program's view after its COMMIT: %r" % done)
        out, _ = waiting.communicate(timeout=60)
        check_eq((waiting.returncode, out.decode().strip()), (0, ""), "the waiting outside writer after the commit")
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=10)
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of the restored program")
    status, out = sql(db, "SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY v)")
    check_eq((status, out), (0, ",".join(sorted(["before", row, "outside"]))), "every committed row at the end")
    check_eq(sql(db, "PRAGMA integrity_check"), (0, "ok"), "integrity of the database")


def run_kill(h, kind, row):
    w, db, pids = start_program(h, kind)
    images = h.mkdir("img")
    h.dump(w.pid, images)
    h.reap_original(w)
    cryotest.wait_pids_gone(pids)
    h.check_feature(images, "file-locks")
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_restored_transaction(h, w.restored(r.pid), db, row)


def run_rewind(h, kind, row, end):
    """Leave-running dump; the original ends without committing (`end`:
    "exit" leaves its journal, "rollback" deletes it); then the restore."""
    w, db, pids = start_program(h, kind)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    # Beside the original, which still holds the locks, the restore fails
    # before anything is created.
    r = h.restore(images, expect_ok=False)
    check(not isinstance(r, cryotest.Restored) and "held by pid %d" % pids[-1] in r.message,
          "restore beside the original: status %s, %s" % (r.rc, r.message))
    order(w, end)
    if end == "rollback":
        check_eq(wait_done(w), "rollback before", "the original's view after its ROLLBACK")
    check_eq(h.wait_exit(w), ("exit", 0), "exit status of the original")
    cryotest.wait_pids_gone(pids)
    if end == "rollback":
        # The transaction's journal is gone with the rollback: the restore
        # says so and leaves nothing; the database is as the rollback left it.
        r = h.restore(images, expect_ok=False)
        check(not isinstance(r, cryotest.Restored) and "test.db-journal" in r.message and "No such file" in r.message,
              "restore after the rollback deleted the journal: status %s, %s" % (r.rc, r.message))
        check_eq([p for p in pids if cryotest.pid_alive(p)], [], "processes left by the failed restore")
        check_eq(sql(db, "SELECT group_concat(v) FROM t"), (0, "before"), "rows after the failed restore")
        return
    r = h.restore(images, detach=True, expected_pid=w.pid)
    check_restored_transaction(h, w.restored(r.pid), db, row)


def test_sqlite_cli_kill(h):
    run_kill(h, "cli", "cli")


def test_sqlite_cli_rewind(h):
    run_rewind(h, "cli", "cli", "exit")


def test_sqlite_python_kill(h):
    run_kill(h, "python", "python")


def test_sqlite_python_rewind(h):
    run_rewind(h, "python", "python", "exit")


def test_sqlite_python_rewind_after_rollback(h):
    run_rewind(h, "python", "python", "rollback")


TESTS = [
    test_sqlite_cli_kill,
    test_sqlite_cli_rewind,
    test_sqlite_python_kill,
    test_sqlite_python_rewind,
    test_sqlite_python_rewind_after_rollback,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
