/* locks: file locks, fd owners (SIGIO) and shared fd tables / fs_structs.
 *
 * Usage: locks CTL_DIR
 *
 * The parent P holds, in CTL_DIR:
 * - "posix": POSIX record locks, write [0,10), read [100,200), write [1000,EOF);
 *   OFD locks on a second description, write [20,30), read [150,160);
 * - "flock-x": an exclusive flock on a description shared by fork with child C1;
 * - "flock-s": a shared flock, and C1 has another shared flock on its own description;
 * - "lease": a read lease, F_SETSIG SIGRTMIN+2 (P is its owner);
 * - "table": a POSIX write lock [0,5) taken by C2, which shares P's fd table (CLONE_FILES);
 * - four pipes whose read ends are O_ASYNC: owner P with F_SETSIG SIGRTMIN+1,
 *   owner thread T of P with SIGRTMIN+3, owner C1 with SIGIO, owner P's
 *   process group with SIGRTMIN+4;
 * - C3 shares P's cwd, root and umask (CLONE_FS);
 * - C4, C5, C6 wait for P's locks: POSIX F_SETLKW on "posix" [2,3), flock
 *   LOCK_EX on "flock-x", OFD F_OFD_SETLKW on "posix" [25,26).
 * Verify: a fresh child V checks every lock from outside (F_GETLK, F_OFD_GETLK,
 * flock LOCK_NB on new descriptions, /proc/locks for the lease and the three
 * waiters), free ranges are free; P checks F_GETOWN_EX/F_GETSIG/F_GETLEASE, that
 * a byte written in each pipe raises its signal (right signal, si_fd, thread,
 * processes), that an fd P opens is seen by C2 and one it closes is gone for
 * C2, that a chdir/umask of P is seen by C3. On exit: P releases its locks and
 * each waiter gets its lock; a writer opening "lease" breaks the lease, P gets
 * SIGRTMIN+2 with the lease's fd.
 */
#define _GNU_SOURCE
#include <linux/kcmp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define NSIG_SLOTS 72
#define CHECK_FD 77 /* opened by P at verify time, looked up by C2 */

struct board {
    /* signals seen by C1 (shared memory) */
    volatile int c1_count[NSIG_SLOTS];
    /* C2 / C3 requests and answers */
    volatile int c2_locked, c2_req, c2_done, c2_getfd;
    volatile int c3_req, c3_done, c3_umask;
    char c3_cwd[512];
    volatile int got[3]; /* C4, C5, C6 got their lock */
    /* V's verdict */
    volatile int v_failed, v_total;
    char v_msg[1024];
};

static struct board *b;
static const char *ctl;
static char p_posix[WL_PATH_MAX], p_flx[WL_PATH_MAX], p_fls[WL_PATH_MAX], p_lease[WL_PATH_MAX],
    p_table[WL_PATH_MAX], p_cwd1[WL_PATH_MAX], p_cwd2[WL_PATH_MAX];

/* Signals seen by P (any thread). */
static volatile int p_count[NSIG_SLOTS];
static volatile int p_last_fd[NSIG_SLOTS], p_last_code[NSIG_SLOTS], p_last_tid[NSIG_SLOTS];
static int in_c1;
static pid_t thread_tid;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig < 0 || sig >= NSIG_SLOTS)
        return;
    if (in_c1) {
        b->c1_count[sig]++;
        return;
    }
    p_last_fd[sig] = si->si_fd;
    p_last_code[sig] = si->si_code;
    p_last_tid[sig] = (int)syscall(SYS_gettid);
    p_count[sig]++;
}

static int sig_p1, sig_p2, sig_lease, sig_grp;

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    int sigs[] = {SIGIO, sig_p1, sig_p2, sig_lease, sig_grp};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            wl_die("sigaction %d", sigs[i]);
}

static int open_or_die(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0)
        wl_die("open %s", path);
    return fd;
}

static int set_lock(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static void sleep_forever(void)
{
    for (;;)
        wl_sleep_ms(1000);
}

/* ---- children ---------------------------------------------------------- */

static void c1_main(void)
{
    in_c1 = 1;
    int fd = open_or_die(p_fls, O_RDONLY);
    if (flock(fd, LOCK_SH) != 0)
        wl_die("C1 flock");
    sleep_forever();
}

static char c2_stack[64 * 1024] __attribute__((aligned(16)));
static char c3_stack[64 * 1024] __attribute__((aligned(16)));

/* C2 shares P's fd table: raw system calls only (it is not a glibc fork). */
static int c2_main(void *arg)
{
    (void)arg;
    int fd = open(p_table, O_RDWR | O_CLOEXEC);
    if (fd < 0 || set_lock(fd, F_SETLK, F_WRLCK, 0, 5) != 0)
        syscall(SYS_exit, 3);
    __atomic_store_n(&b->c2_locked, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        if (b->c2_req != b->c2_done) {
            b->c2_getfd = fcntl(CHECK_FD, F_GETFD) >= 0;
            __atomic_store_n(&b->c2_done, b->c2_req, __ATOMIC_SEQ_CST);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* C3 shares P's cwd, root and umask. */
static int c3_main(void *arg)
{
    (void)arg;
    for (;;) {
        if (b->c3_req != b->c3_done) {
            if (!getcwd(b->c3_cwd, sizeof b->c3_cwd))
                b->c3_cwd[0] = '\0';
            mode_t m = umask(0);
            umask(m);
            b->c3_umask = (int)m;
            __atomic_store_n(&b->c3_done, b->c3_req, __ATOMIC_SEQ_CST);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static pid_t spawn_waiter(int which)
{
    pid_t pid = fork();
    if (pid < 0)
        wl_die("fork");
    if (pid > 0)
        return pid;
    int r;
    if (which == 0) {
        int fd = open_or_die(p_posix, O_RDWR);
        while ((r = set_lock(fd, F_SETLKW, F_WRLCK, 2, 1)) != 0 && errno == EINTR) {
        }
    } else if (which == 1) {
        int fd = open_or_die(p_flx, O_RDONLY);
        while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
        }
    } else {
        int fd = open_or_die(p_posix, O_RDWR);
        while ((r = set_lock(fd, F_OFD_SETLKW, F_WRLCK, 25, 1)) != 0 && errno == EINTR) {
        }
    }
    if (r == 0)
        b->got[which] = 1;
    sleep_forever();
    return 0;
}

static void *thread_main(void *arg)
{
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    sleep_forever();
    return NULL;
}

/* ---- verification from a separate process --------------------------------- */

static void expect_lock(struct wl_checks *c, const char *path, int cmd, short probe, off_t start, off_t len,
                        short want_type, pid_t want_pid, const char *what)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct flock fl = {.l_type = probe, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fd < 0 || fcntl(fd, cmd, &fl) != 0) {
        wl_check(c, 0, "%s: probe failed (errno %d)", what, errno);
    } else {
        wl_check(c, fl.l_type == want_type && (want_type == F_UNLCK || want_pid == 0 || fl.l_pid == want_pid),
                 "%s: found type %d pid %d, expected type %d pid %d", what, fl.l_type, fl.l_pid, want_type,
                 want_pid);
    }
    if (fd >= 0)
        close(fd);
}

static void expect_flock(struct wl_checks *c, const char *path, int op, int want_ok, const char *what)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = fd >= 0 ? flock(fd, op | LOCK_NB) : -1;
    wl_check(c, want_ok ? r == 0 : (r != 0 && errno == EWOULDBLOCK), "%s: flock returned %d (errno %d)", what, r,
             errno);
    if (fd >= 0)
        close(fd);
}

/* Whether /proc/locks has a line with all of `parts` (space separated tokens). */
static int proc_locks_has(const char *kind_prefix, const char *type, pid_t pid, ino_t ino)
{
    char buf[65536];
    int fd = open("/proc/locks", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = wl_pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 0)
        return 0;
    buf[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, ":%lu ", (unsigned long)ino);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char pidstr[32];
        snprintf(pidstr, sizeof pidstr, " %d ", (int)pid);
        if (strstr(line, kind_prefix) && strstr(line, type) && strstr(line, pidstr) && strstr(line, want))
            return 1;
    }
    return 0;
}

static ino_t ino_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void verifier(pid_t p, pid_t c2, const pid_t *waiters)
{
    struct wl_checks c;
    wl_checks_init(&c);
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 0, 10, F_WRLCK, p, "POSIX write [0,10)");
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 100, 50, F_RDLCK, p, "POSIX read [100,150)");
    expect_lock(&c, p_posix, F_GETLK, F_RDLCK, 100, 100, F_UNLCK, 0, "read probe of [100,200)");
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 5000, 1, F_WRLCK, p, "POSIX write [1000,EOF)");
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 10, 10, F_UNLCK, 0, "free [10,20)");
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 30, 70, F_UNLCK, 0, "free [30,100)");
    expect_lock(&c, p_posix, F_GETLK, F_WRLCK, 200, 800, F_UNLCK, 0, "free [200,1000)");
    expect_lock(&c, p_posix, F_OFD_GETLK, F_WRLCK, 20, 10, F_WRLCK, -1, "OFD write [20,30)");
    expect_lock(&c, p_posix, F_OFD_GETLK, F_WRLCK, 150, 10, F_RDLCK, 0, "read locks on [150,160)");
    expect_lock(&c, p_table, F_GETLK, F_WRLCK, 0, 5, F_WRLCK, c2, "C2's POSIX write [0,5) on the shared table");
    expect_lock(&c, p_table, F_GETLK, F_WRLCK, 5, 100, F_UNLCK, 0, "free [5,105) of table");
    expect_flock(&c, p_flx, LOCK_SH, 0, "flock-x shared from a new description");
    expect_flock(&c, p_fls, LOCK_SH, 1, "flock-s shared from a new description");
    expect_flock(&c, p_fls, LOCK_EX, 0, "flock-s exclusive from a new description");
    wl_check(&c, proc_locks_has("LEASE  ACTIVE", "READ", p, ino_of(p_lease)), "no active read lease of pid %d in /proc/locks",
             (int)p);
    /* The waiters re-enter their wait once they run again: bounded poll. */
    const char *kinds[3] = {"-> POSIX", "-> FLOCK", "-> OFDLCK"};
    const char *paths[3] = {p_posix, p_flx, p_posix};
    int seen[3] = {0, 0, 0};
    for (int t = 0; t < 500 && !(seen[0] && seen[1] && seen[2]); t++) {
        for (int i = 0; i < 3; i++)
            seen[i] = seen[i] || proc_locks_has(kinds[i], "WRITE", i == 2 ? -1 : waiters[i], ino_of(paths[i]));
        wl_sleep_ms(10);
    }
    for (int i = 0; i < 3; i++) {
        wl_check(&c, seen[i], "waiter %d (pid %d) is not waiting (%s) in /proc/locks", i, (int)waiters[i], kinds[i]);
        wl_check(&c, !b->got[i], "waiter %d got its lock while it is held", i);
    }
    b->v_failed = c.failed;
    b->v_total = c.total;
    memcpy(b->v_msg, c.msg, sizeof b->v_msg < sizeof c.msg ? sizeof b->v_msg : sizeof c.msg);
    b->v_msg[sizeof b->v_msg - 1] = '\0';
    _exit(0);
}

/* ---- checks in P -------------------------------------------------------- */

/* Writes a byte into a pipe and waits (bounded) until `counter` moves. */
/* Bounds are generous (20 s): under a loaded CI machine the signalled process may wait long for a CPU. */
static int raise_io(int wfd, int rfd, volatile int *counter)
{
    int before = *counter;
    if (write(wfd, "x", 1) != 1)
        return 0;
    for (int t = 0; t < 2000 && *counter == before; t++)
        wl_sleep_ms(10);
    char ch;
    while (read(rfd, &ch, 1) == 1) {
    }
    return *counter != before;
}

static void check_owner(struct wl_checks *c, int fd, int type, pid_t pid, int sig, const char *what)
{
    struct f_owner_ex o;
    int r = fcntl(fd, F_GETOWN_EX, &o);
    int got_type = r == 0 ? (int)o.type : -1;
    wl_check(c, got_type == type && o.pid == pid, "%s: owner type %d pid %d, expected %d %d", what, got_type,
             r == 0 ? o.pid : -1, type, (int)pid);
    wl_check(c, fcntl(fd, F_GETSIG) == sig, "%s: F_GETSIG %d, expected %d", what, fcntl(fd, F_GETSIG), sig);
    int fl = fcntl(fd, F_GETFL);
    wl_check(c, (fl & O_ASYNC) != 0, "%s: O_ASYNC lost (flags %#x)", what, fl);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    ctl = argv[1];
    sig_p1 = SIGRTMIN + 1;
    sig_lease = SIGRTMIN + 2;
    sig_p2 = SIGRTMIN + 3;
    sig_grp = SIGRTMIN + 4;
    wl_path(p_posix, sizeof p_posix, ctl, "posix");
    wl_path(p_flx, sizeof p_flx, ctl, "flock-x");
    wl_path(p_fls, sizeof p_fls, ctl, "flock-s");
    wl_path(p_lease, sizeof p_lease, ctl, "lease");
    wl_path(p_table, sizeof p_table, ctl, "table");
    wl_path(p_cwd1, sizeof p_cwd1, ctl, "cwd1");
    wl_path(p_cwd2, sizeof p_cwd2, ctl, "cwd2");
    if (mkdir(p_cwd1, 0755) != 0 || mkdir(p_cwd2, 0755) != 0)
        wl_die("mkdir");
    if (chdir(p_cwd1) != 0)
        wl_die("chdir");
    umask(022);
    b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        wl_die("mmap");
    install_handlers();
    const pid_t p = wl_getpid();

    /* POSIX and OFD locks */
    int fd_posix = open_or_die(p_posix, O_RDWR | O_CREAT);
    if (ftruncate(fd_posix, 4096) != 0)
        wl_die("ftruncate");
    if (set_lock(fd_posix, F_SETLK, F_WRLCK, 0, 10) || set_lock(fd_posix, F_SETLK, F_RDLCK, 100, 100) ||
        set_lock(fd_posix, F_SETLK, F_WRLCK, 1000, 0))
        wl_die("F_SETLK");
    int fd_ofd = open_or_die(p_posix, O_RDWR);
    if (set_lock(fd_ofd, F_OFD_SETLK, F_WRLCK, 20, 10) || set_lock(fd_ofd, F_OFD_SETLK, F_RDLCK, 150, 10))
        wl_die("F_OFD_SETLK");
    /* flock: an exclusive one shared with C1 by fork, a shared one */
    int fd_flx = open_or_die(p_flx, O_RDWR | O_CREAT);
    if (flock(fd_flx, LOCK_EX) != 0)
        wl_die("flock LOCK_EX");
    int fd_fls = open_or_die(p_fls, O_RDONLY | O_CREAT);
    if (flock(fd_fls, LOCK_SH) != 0)
        wl_die("flock LOCK_SH");
    /* lease */
    close(open_or_die(p_lease, O_RDONLY | O_CREAT));
    close(open_or_die(p_table, O_RDWR | O_CREAT));
    int fd_lease = open_or_die(p_lease, O_RDONLY);
    if (fcntl(fd_lease, F_SETSIG, sig_lease) != 0 || fcntl(fd_lease, F_SETLEASE, F_RDLCK) != 0)
        wl_die("F_SETLEASE");

    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, NULL) != 0)
        wl_die("pthread_create");
    while (!__atomic_load_n(&thread_tid, __ATOMIC_SEQ_CST))
        wl_sleep_ms(1);

    pid_t c1 = fork();
    if (c1 < 0)
        wl_die("fork");
    if (c1 == 0)
        c1_main();

    /* pipes with O_ASYNC read ends */
    int pp[4][2];
    const int owner_type[4] = {F_OWNER_PID, F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP};
    const pid_t owner_pid[4] = {p, thread_tid, c1, getpgrp()};
    const int owner_sig[4] = {sig_p1, sig_p2, 0, sig_grp};
    for (int i = 0; i < 4; i++) {
        if (pipe2(pp[i], O_CLOEXEC | O_NONBLOCK) != 0)
            wl_die("pipe2");
        struct f_owner_ex o = {(enum __pid_type)owner_type[i], owner_pid[i]};
        if (fcntl(pp[i][0], F_SETOWN_EX, &o) != 0 || fcntl(pp[i][0], F_SETSIG, owner_sig[i]) != 0 ||
            fcntl(pp[i][0], F_SETFL, O_NONBLOCK | O_ASYNC) != 0)
            wl_die("F_SETOWN_EX pipe %d", i);
    }

    pid_t c2 = clone(c2_main, c2_stack + sizeof c2_stack, CLONE_FILES | SIGCHLD, NULL);
    pid_t c3 = clone(c3_main, c3_stack + sizeof c3_stack, CLONE_FS | SIGCHLD, NULL);
    if (c2 < 0 || c3 < 0)
        wl_die("clone");
    /* (Not probed through an fd of P's: closing it would drop the lock, which
     * belongs to the fd table P and C2 share.) */
    for (int t = 0; !__atomic_load_n(&b->c2_locked, __ATOMIC_SEQ_CST); t++) {
        if (t > 1000)
            wl_die("C2 did not take its lock");
        wl_sleep_ms(5);
    }
    pid_t waiters[3];
    for (int i = 0; i < 3; i++)
        waiters[i] = spawn_waiter(i);
    /* ready once the three wait */
    for (int t = 0;; t++) {
        if (proc_locks_has("-> POSIX", "WRITE", waiters[0], ino_of(p_posix)) &&
            proc_locks_has("-> FLOCK", "WRITE", waiters[1], ino_of(p_flx)) &&
            proc_locks_has("-> OFDLCK", "WRITE", -1, ino_of(p_posix)))
            break;
        if (t > 1000)
            wl_die("the waiters do not wait");
        wl_sleep_ms(5);
    }

    char layout[512];
    snprintf(layout, sizeof layout, "c1 %d\nc2 %d\nc3 %d\nwaiters %d %d %d\nthread %d\n", (int)c1, (int)c2, (int)c3,
             (int)waiters[0], (int)waiters[1], (int)waiters[2], (int)thread_tid);
    wl_write_file_atomic(ctl, "layout", layout);
    wl_ready(ctl);

    for (;;) {
        wl_sleep_ms(10);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        struct wl_checks c;
        wl_checks_init(&c);

        /* from outside: a fresh child */
        pid_t v = fork();
        if (v == 0)
            verifier(p, c2, waiters);
        int st;
        while (waitpid(v, &st, 0) < 0 && errno == EINTR) {
        }
        wl_check(&c, b->v_failed == 0 && b->v_total > 0, "verifier: %d of %d failed: %s", b->v_failed, b->v_total,
                 b->v_msg);

        /* owners, signals, O_ASYNC, the lease */
        for (int i = 0; i < 4; i++)
            check_owner(&c, pp[i][0], owner_type[i], owner_pid[i], owner_sig[i], "pipe");
        check_owner(&c, fd_lease, F_OWNER_PID, p, sig_lease, "lease fd");
        wl_check(&c, fcntl(fd_lease, F_GETLEASE) == F_RDLCK, "F_GETLEASE %d", fcntl(fd_lease, F_GETLEASE));
        wl_check(&c, raise_io(pp[0][1], pp[0][0], &p_count[sig_p1]), "no SIGRTMIN+1 for pipe 0");
        wl_check(&c, p_last_fd[sig_p1] == pp[0][0] && p_last_code[sig_p1] == POLL_IN,
                 "pipe 0 signal: si_fd %d si_code %d, expected %d %d", p_last_fd[sig_p1], p_last_code[sig_p1],
                 pp[0][0], POLL_IN);
        wl_check(&c, raise_io(pp[1][1], pp[1][0], &p_count[sig_p2]), "no SIGRTMIN+3 for pipe 1");
        wl_check(&c, p_last_tid[sig_p2] == thread_tid && p_last_fd[sig_p2] == pp[1][0],
                 "pipe 1 signal went to tid %d fd %d, expected thread %d fd %d", p_last_tid[sig_p2],
                 p_last_fd[sig_p2], (int)thread_tid, pp[1][0]);
        wl_check(&c, raise_io(pp[2][1], pp[2][0], &b->c1_count[SIGIO]), "no SIGIO in C1 for pipe 2");
        int c1_grp = b->c1_count[sig_grp];
        wl_check(&c, raise_io(pp[3][1], pp[3][0], &p_count[sig_grp]), "no SIGRTMIN+4 in P for pipe 3");
        for (int t = 0; t < 2000 && b->c1_count[sig_grp] == c1_grp; t++)
            wl_sleep_ms(10);
        wl_check(&c, b->c1_count[sig_grp] != c1_grp, "no SIGRTMIN+4 in C1 (the process group) for pipe 3");

        /* C2 shares the fd table, C3 the fs_struct */
        wl_check(&c, syscall(SYS_kcmp, p, c2, KCMP_FILES, 0, 0) == 0, "C2 no longer shares P's fd table");
        wl_check(&c, syscall(SYS_kcmp, p, c3, KCMP_FS, 0, 0) == 0, "C3 no longer shares P's fs_struct");
        for (int open_it = 1; open_it >= 0; open_it--) {
            if (open_it && dup3(fd_fls, CHECK_FD, O_CLOEXEC) != CHECK_FD)
                wl_check(&c, 0, "dup3 to %d failed", CHECK_FD);
            if (!open_it)
                close(CHECK_FD);
            int req2 = ++b->c2_req;
            for (int t = 0; t < 500 && __atomic_load_n(&b->c2_done, __ATOMIC_SEQ_CST) != req2; t++)
                wl_sleep_ms(10);
            wl_check(&c, b->c2_done == req2 && b->c2_getfd == open_it, "C2 sees fd %d %s, expected %s", CHECK_FD,
                     b->c2_getfd ? "open" : "closed", open_it ? "open" : "closed");
        }
        const char *dirs[2] = {p_cwd2, p_cwd1};
        const mode_t masks[2] = {027, 022};
        for (int i = 0; i < 2; i++) {
            if (chdir(dirs[i]) != 0)
                wl_check(&c, 0, "chdir %s failed", dirs[i]);
            umask(masks[i]);
            int req3 = ++b->c3_req;
            for (int t = 0; t < 500 && __atomic_load_n(&b->c3_done, __ATOMIC_SEQ_CST) != req3; t++)
                wl_sleep_ms(10);
            wl_check(&c, b->c3_done == req3 && strcmp(b->c3_cwd, dirs[i]) == 0 && b->c3_umask == (int)masks[i],
                     "C3 sees cwd %s umask %o, expected %s %o", b->c3_cwd, b->c3_umask, dirs[i], masks[i]);
        }

        if (req == WL_VERIFY_EXIT) {
            /* Each waiter gets its lock once P lets go. */
            set_lock(fd_posix, F_SETLK, F_UNLCK, 0, 10);
            flock(fd_flx, LOCK_UN);
            set_lock(fd_ofd, F_OFD_SETLK, F_UNLCK, 20, 10);
            for (int i = 0; i < 3; i++) {
                for (int t = 0; t < 500 && !b->got[i]; t++)
                    wl_sleep_ms(10);
                wl_check(&c, b->got[i], "waiter %d did not get its lock once released", i);
            }
            /* A writer breaks the lease: P hears of it through SIGRTMIN+2 on the lease fd. */
            int before = p_count[sig_lease];
            int w = open(p_lease, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            wl_check(&c, w < 0 && errno == EWOULDBLOCK, "opening the leased file for writing: %d (errno %d)", w,
                     errno);
            for (int t = 0; t < 500 && p_count[sig_lease] == before; t++)
                wl_sleep_ms(10);
            wl_check(&c, p_count[sig_lease] != before && p_last_fd[sig_lease] == fd_lease,
                     "lease break: %d signals, si_fd %d (lease fd %d)", p_count[sig_lease] - before,
                     p_last_fd[sig_lease], fd_lease);
            fcntl(fd_lease, F_SETLEASE, F_UNLCK);
            if (w >= 0)
                close(w);
        }

        char summary[128];
        snprintf(summary, sizeof summary, "locks checks=%d", c.total);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            pid_t kids[] = {c1, c2, c3, waiters[0], waiters[1], waiters[2]};
            for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++) {
                kill(kids[i], SIGKILL);
                waitpid(kids[i], NULL, 0);
            }
            return ok ? 0 : 1;
        }
    }
}
