#!/usr/bin/python3
"""PostgreSQL 15 from Debian, checkpointed idle and restored (kill mode and
rewind), verified from outside with psql.

The server runs as the postgres user in a scratch directory (initdb), on a
UNIX socket there only (listen_addresses = ''), with a table of 10000 rows and
two indexes, amcheck installed; no client is connected at the dump (connected
sockets are not supported yet). Its shared buffers hold pages written by
backends that have exited since (psql's backend, autovacuum workers): the
restore must bring back every page of the shared memory object, not only
those the live processes map, or the catalog indexes come back as zero pages.

After a restore: every row is read (count and sums), every B-tree index of
the database (the catalog's too) passes amcheck's bt_index_check with
heapallindexed, the server log shows no error, and the server stops cleanly
(pg_ctl stop -m fast); a fresh start on the same data directory still reads
every row and passes amcheck.

Rewind: dump --leave-running, stop the original cleanly, restore, verify
(read-only), stop, restore the same image again and verify again. The data
directory is not in the image: the lock files the original removed when it
stopped (postmaster.pid, the socket's lock file) are put back as they were at
the dump before each restore, as a user rewinding a server would.

psql runs as root (-U postgres, trust authentication): the restored socket
file's owner and mode are not the original's yet, so the postgres user could
not connect through it.

Run: test_postgres.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail  # noqa: E402

BIN = "/usr/lib/postgresql/15/bin"
ROWS = 10000
LOCK_FILES = ("data/postmaster.pid", ".s.PGSQL.5432.lock")
# What a damaged restore made the server print (the issue: "index
# "pg_authid_rolname_index" contains unexpected zero page").
LOG_ERRORS = ("PANIC", "FATAL", "ERROR", "unexpected zero page", "corrupt", "invalid page")
# pg_isready's own probes while the server starts (wait_ready) log this FATAL;
# it says nothing about the data (seen on a loaded 2-core machine).
LOG_BENIGN = ("FATAL:  the database system is starting up",)


class Server:
    """One scratch PostgreSQL cluster; the scratch directory is removed at the end."""

    def __init__(self, h):
        self.h = h
        check(os.path.exists(BIN + "/postgres"), "PostgreSQL 15 is not installed (%s): scripts/install-deps.sh" % BIN)
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        # Not under the harness's 0700 directory: the postgres user must reach it.
        self.dir = tempfile.mkdtemp(prefix="cryo-pg-")
        os.chown(self.dir, self.uid, self.gid)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.pid = None
        self.log_checked = 0
        self.posix_shm = set()  # /dev/shm/PostgreSQL.N files the server mapped
        self.sysv_keys = set()  # its SysV segment's key

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # A test that failed half-way leaves the server running: its processes
        # go first (by pid, only ours), then the shared memory it would have
        # removed at a clean stop.
        if self.pid and cryotest.pid_alive(self.pid) and self.h._is_ours(self.pid):
            for p in self.h._descendants(self.pid) + [self.pid]:
                self.h.cleanup_one(p)
        for path in self.posix_shm:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        for line in (cryotest.read_text("/proc/sysvipc/shm") or "").splitlines()[1:]:
            f = line.split()
            if int(f[0]) in self.sysv_keys and int(f[6]) == 0:
                subprocess.run(["ipcrm", "-m", f[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def note_ipc(self):
        """The shared memory objects the postmaster maps, to remove if the test
        leaves them behind."""
        for v in cryotest.proc_maps(self.pid):
            name = v.get("name") or ""
            if name.startswith("/dev/shm/PostgreSQL."):
                self.posix_shm.add(name.split(" ")[0])
            elif name.startswith("/SYSV"):
                self.sysv_keys.add(int(name[5:13], 16))

    def as_postgres(self, argv, timeout=30):
        r = subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, cwd=self.dir)
        check(r.returncode == 0, "%s failed (status %d): %s" % (" ".join(argv), r.returncode,
                                                              r.stdout.decode(errors="replace")[-2000:]))
        return r.stdout.decode()

    def initdb(self):
        self.as_postgres([BIN + "/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"], timeout=60)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\n"
                    # No huge pages whatever the machine reserves (hugetlb memory is refused).
                    "huge_pages = off\n" % self.dir)

    def start(self):
        """Starts the postmaster as a child of the harness and waits until it accepts connections."""
        out = open(self.log, "ab")
        p = subprocess.Popen([BIN + "/postgres", "-D", self.data], user=self.uid, group=self.gid, extra_groups=[],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.dir,
                             start_new_session=True, close_fds=True)
        out.close()
        self.h.tracked_pids.append(p.pid)
        self.h.popens[p.pid] = p
        self.pid = p.pid
        self.wait_ready()
        self.note_ipc()
        return p

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run([BIN + "/pg_isready", "-h", self.dir, "-U", "postgres", "-t", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            if r.returncode == 0:
                return
            check(cryotest.pid_alive(self.pid), "the postmaster (pid %d) exited; log:\n%s" % (self.pid, self.log_tail()))
            if time.monotonic() > deadline:
                fail("the server (pid %d) does not accept connections within %.0fs; log:\n%s"
                     % (self.pid, timeout, self.log_tail()))
            time.sleep(0.1)

    def psql(self, *sql, timeout=30):
        argv = [BIN + "/psql", "-h", self.dir, "-U", "postgres", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for s in sql:
            argv += ["-c", s]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        check(r.returncode == 0, "psql %r failed (status %d): %s\nserver log:\n%s"
              % (sql, r.returncode, r.stdout.decode(errors="replace")[-2000:], self.log_tail()))
        return r.stdout.decode().strip()

    def backends(self):
        """The postmaster's children (its background processes)."""
        return [int(x) for x in cryotest.read_text("/proc/%d/task/%d/children" % (self.pid, self.pid), "").split()]

    def wait_idle(self, timeout=20):
        """No client backend connected (connected sockets cannot be dumped yet)."""
        deadline = time.monotonic() + timeout
        while True:
            clients = [p for p in self.backends()
                       if cryotest.read_text("/proc/%d/cmdline" % p, "").startswith("postgres: postgres ")]
            if not clients:
                return
            if time.monotonic() > deadline:
                fail("client backends %s still there %.0fs after the last psql" % (clients, timeout))
            time.sleep(0.05)

    def stop(self):
        """pg_ctl stop -m fast; the postmaster (a child of the harness) exits 0."""
        self.as_postgres([BIN + "/pg_ctl", "-D", self.data, "-w", "-t", "30", "stop", "-m", "fast"], timeout=60)
        check_eq(self.h.wait_exit(self.pid, timeout=30), ("exit", 0), "exit of the postmaster %d" % self.pid)
        cryotest.wait_pids_gone([self.pid])

    def log_tail(self, n=30):
        return "\n".join((cryotest.read_text(self.log, "") or "").splitlines()[-n:])

    def check_log(self, when):
        """No error in the server log since the last check."""
        lines = (cryotest.read_text(self.log, "") or "").splitlines()
        bad = [l for l in lines[self.log_checked:]
               if any(e in l for e in LOG_ERRORS) and not any(b in l for b in LOG_BENIGN)]
        self.log_checked = len(lines)
        check(not bad, "server log %s:\n%s" % (when, "\n".join(bad[:20])))

    def save_lock_files(self):
        self.saved_locks = {}
        for name in LOCK_FILES:
            path = os.path.join(self.dir, name)
            with open(path, "rb") as f:
                self.saved_locks[path] = (f.read(), os.stat(path))

    def put_lock_files_back(self):
        for path, (data, st) in self.saved_locks.items():
            with open(path, "wb") as f:
                f.write(data)
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)


def setup(srv):
    srv.initdb()
    srv.start()
    srv.psql("CREATE EXTENSION amcheck",
             "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)",
             "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, %d) g" % ROWS,
             "CREATE INDEX t_v ON t (v)",
             "VACUUM ANALYZE t")
    expected = verify_rows(srv, "before the dump")
    srv.wait_idle()
    srv.check_log("before the dump")
    return expected


def verify_rows(srv, when, expected=None):
    got = srv.psql("SELECT count(*), sum(id), sum(length(v)), md5(string_agg(v, ',' ORDER BY id)) FROM t")
    if expected is None:
        check(got.startswith("%d|%d|" % (ROWS, ROWS * (ROWS + 1) // 2)), "rows %s: %s" % (when, got))
    else:
        check_eq(got, expected, "rows %s" % when)
    return got


def verify_indexes(srv, when):
    """bt_index_check with heapallindexed on every B-tree index (catalogs too)."""
    n = srv.psql("SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                 "WHERE c.relkind = 'i' AND a.amname = 'btree'")
    checked = srv.psql("SELECT count(bt_index_check(c.oid::regclass, true)) FROM pg_class c "
                       "JOIN pg_am a ON a.oid = c.relam WHERE c.relkind = 'i' AND a.amname = 'btree'", timeout=60)
    check(int(n) > 100, "B-tree indexes %s: only %s" % (when, n))
    check_eq(checked, n, "indexes checked %s" % when)


def verify(srv, expected, when):
    verify_rows(srv, when, expected)
    verify_indexes(srv, when)
    srv.check_log(when)


def fresh_start(srv, expected, when):
    """A clean stop of the restored server, then a fresh start on its data directory."""
    srv.stop()
    srv.check_log("after the clean stop " + when)
    srv.start()
    verify(srv, expected, "after a fresh start " + when)
    srv.stop()


def test_postgres_kill(h):
    with Server(h) as srv:
        expected = setup(srv)
        pid = srv.pid
        images = h.mkdir("img")
        h.dump(pid, images)
        h.reap_original(cryotest.Workload("postgres", srv.dir, pid, h.popens[pid]))
        # The server's processes at the dump (an autovacuum worker may have
        # come and gone just before).
        procs = [p["pid"] for p in h.show_json(images)["processes"] if not p.get("zombie")]
        check(len(procs) >= 5, "processes of the server in the image: %s" % procs)
        cryotest.wait_pids_gone(procs)
        h.restore(images, detach=True, expected_pid=pid)
        for c in procs:
            check(cryotest.pid_alive(c), "process %d of the server is not restored" % c)
        srv.wait_ready()
        verify(srv, expected, "after restore")
        # The restored server writes, too.
        srv.psql("INSERT INTO t VALUES (%d, 'after restore')" % (ROWS + 1))
        expected = srv.psql("SELECT count(*), sum(id), sum(length(v)), md5(string_agg(v, ',' ORDER BY id)) FROM t")
        check(expected.startswith("%d|" % (ROWS + 1)), "rows after an insert: %s" % expected)
        srv.wait_idle()
        fresh_start(srv, expected, "after restore")


def test_postgres_rewind(h):
    with Server(h) as srv:
        expected = setup(srv)
        pid = srv.pid
        images = h.mkdir("img")
        h.dump(pid, images, leave_running=True)
        procs = [p["pid"] for p in h.show_json(images)["processes"] if not p.get("zombie")]
        srv.save_lock_files()
        verify(srv, expected, "of the original after dump --leave-running")
        srv.wait_idle()
        srv.stop()
        cryotest.wait_pids_gone(procs)
        # The original went on after the dump and stopped cleanly: it wrote
        # its WAL and data files, which the image's processes hold open. cryo
        # refuses that by default, naming a file; the test knows the files
        # changed legitimately (the server itself wrote them, and a restored
        # postgres recovers from its WAL as after a crash), so it restores
        # with --ignore-changed-files.
        srv.put_lock_files_back()
        r = h.restore(images, expect_ok=False)
        check(r.rc != 0 and "changed since the dump" in r.message and srv.data in r.message,
              "restore onto the data files the original wrote after the dump was not refused: %s" % r.message)
        cryotest.wait_pids_gone(procs)
        for i in (1, 2):
            srv.put_lock_files_back()
            h.restore(images, detach=True, expected_pid=pid, extra=["--ignore-changed-files"])
            srv.wait_ready()
            verify(srv, expected, "of rewind instance %d" % i)
            srv.wait_idle()
            srv.stop()
            srv.check_log("after the clean stop of rewind instance %d" % i)
            cryotest.wait_pids_gone(procs)
        srv.start()
        verify(srv, expected, "after a fresh start after the rewinds")
        srv.stop()


TESTS = [test_postgres_kill, test_postgres_rewind]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
