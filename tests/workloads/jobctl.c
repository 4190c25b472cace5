/* Job control and ptrace relationships (tests/e2e/test_taskstate.py).
 *
 *   jobctl CTL tree       a tree with stopped children:
 *       c1  own process group, stopped by SIGTSTP; the root consumed the stop
 *           report (waitpid WUNTRACED);
 *       c2  stopped by SIGSTOP (raise); the root has not waited for it;
 *       c3  three threads, stopped by SIGSTOP; report consumed; one more
 *           SIGSTOP pending;
 *       c4  own process group, running, SIGTSTP blocked and pending.
 *     verify "check": c1-c3 stopped (every thread), c2's stop report still
 *     waiting for the root, c1's and c3's (reported again after a restore, see
 *     docs/architecture.md) name their signal; c4 runs with SIGTSTP pending.
 *     verify "exit": SIGCONT resumes c1-c3 (CLD_CONTINUED, counters move);
 *     c4 unblocks SIGTSTP and stops by it; then everything is killed.
 *   jobctl CTL tracer     the root traces its child (PTRACE_SEIZE).
 *   jobctl CTL trace PID  the root traces PID, a process outside its tree.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "wl_common.h"

struct shared {
    volatile uint64_t c1, c2, c3[3], c4;
    volatile int c3_ready;
    volatile int c4_pending;  /* c4 sees SIGTSTP pending */
    volatile int c4_unblock;  /* 1: c4 unblocks SIGTSTP */
};

static struct shared *sh;
static pid_t c1, c2, c3, c4;

static void tick(volatile uint64_t *c)
{
    for (;;) {
        (*c)++;
        wl_sleep_ms(1);
    }
}

static void *c3_thread(void *arg)
{
    tick(&sh->c3[(uintptr_t)arg]);
    return NULL;
}

static void c4_main(void)
{
    sigset_t tstp, pending;
    sigemptyset(&tstp);
    sigaddset(&tstp, SIGTSTP);
    sigprocmask(SIG_BLOCK, &tstp, NULL);
    raise(SIGTSTP);
    for (;;) {
        sh->c4++;
        sigpending(&pending);
        sh->c4_pending = sigismember(&pending, SIGTSTP);
        if (sh->c4_unblock == 1) {
            sh->c4_unblock = 2;
            sigprocmask(SIG_UNBLOCK, &tstp, NULL); /* stops here */
        }
        wl_sleep_ms(1);
    }
}

static pid_t fork_or_die(void)
{
    pid_t p = fork();
    if (p < 0)
        wl_die("fork");
    return p;
}

static char task_state(pid_t pid, pid_t tid)
{
    char path[128], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = wl_pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] && rp[2] ? rp[2] : '?';
}

/* Every thread of pid in state T; returns the number of threads seen. */
static int all_stopped(pid_t pid, int *threads)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    char buf[4096];
    int ok = 1, n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dfd, buf, sizeof buf);
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d =
                (void *)(buf + off);
            if (d->name[0] != '.') {
                n++;
                if (task_state(pid, atoi(d->name)) != 'T')
                    ok = 0;
            }
            off += d->reclen;
        }
    }
    close(dfd);
    *threads = n;
    return ok;
}

static void wait_stopped(pid_t pid, const char *what)
{
    int n;
    for (int i = 0; i < 10000; i++) {
        if (all_stopped(pid, &n))
            return;
        wl_sleep_ms(1);
    }
    errno = 0;
    wl_die("%s (pid %d) did not stop", what, (int)pid);
}

/* A stop report waiting for us (not consumed: WNOWAIT); 0 if none. */
static int stop_report(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WNOHANG | WNOWAIT) != 0 || si.si_pid != pid)
        return 0;
    return si.si_code == CLD_STOPPED ? si.si_status : -1;
}

static int moves(volatile uint64_t *c)
{
    uint64_t v = *c;
    for (int i = 0; i < 10000; i++) {
        if (*c != v)
            return 1;
        wl_sleep_ms(1);
    }
    return 0;
}

static void check_tree(struct wl_checks *c)
{
    int n;
    wl_check(c, all_stopped(c1, &n) && n == 1, "c1 (pid %d) is not stopped", (int)c1);
    wl_check(c, all_stopped(c2, &n) && n == 1, "c2 (pid %d) is not stopped", (int)c2);
    wl_check(c, all_stopped(c3, &n) && n == 3, "c3 (pid %d): not all of its 3 threads stopped (%d seen)", (int)c3, n);
    int r = stop_report(c2);
    wl_check(c, r == SIGSTOP, "c2's stop report: expected SIGSTOP waiting, actual %d", r);
    r = stop_report(c1);
    wl_check(c, r == 0 || r == SIGTSTP, "c1's stop report: expected none or SIGTSTP, actual %d", r);
    r = stop_report(c3);
    wl_check(c, r == 0 || r == SIGSTOP, "c3's stop report: expected none or SIGSTOP, actual %d", r);
    wl_check(c, task_state(c4, c4) != 'T', "c4 (pid %d) is stopped", (int)c4);
    wl_check(c, moves(&sh->c4), "c4's counter does not move");
    wl_check(c, sh->c4_pending == 1, "c4: SIGTSTP is not pending");
}

static int continued(pid_t pid)
{
    siginfo_t si;
    for (int i = 0; i < 10000; i++) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WCONTINUED | WNOHANG) == 0 && si.si_pid == pid)
            return si.si_code == CLD_CONTINUED;
        wl_sleep_ms(1);
    }
    return 0;
}

static void finish_tree(struct wl_checks *c)
{
    kill(c1, SIGCONT);
    kill(c2, SIGCONT);
    kill(c3, SIGCONT);
    wl_check(c, continued(c1), "c1: no CLD_CONTINUED after SIGCONT");
    wl_check(c, continued(c2), "c2: no CLD_CONTINUED after SIGCONT");
    wl_check(c, continued(c3), "c3: no CLD_CONTINUED after SIGCONT");
    wl_check(c, moves(&sh->c1), "c1 does not run after SIGCONT");
    wl_check(c, moves(&sh->c2), "c2 does not run after SIGCONT");
    for (int i = 0; i < 3; i++)
        wl_check(c, moves(&sh->c3[i]), "c3 thread %d does not run after SIGCONT", i);
    sh->c4_unblock = 1;
    int st = 0, got = 0;
    for (int i = 0; i < 10000 && !got; i++) {
        got = waitpid(c4, &st, WUNTRACED | WNOHANG) == c4;
        if (!got)
            wl_sleep_ms(1);
    }
    wl_check(c, got && WIFSTOPPED(st) && WSTOPSIG(st) == SIGTSTP,
             "c4: expected a stop by SIGTSTP once unblocked, actual %s status %#x", got ? "wait" : "no", st);
    pid_t kids[] = {c1, c2, c3, c4};
    for (int i = 0; i < 4; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
}

static void verify_tree(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    check_tree(c);
    if (exiting)
        finish_tree(c);
}

static void run_tree(const char *ctl)
{
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        wl_die("mmap");
    int st;

    if ((c1 = fork_or_die()) == 0) {
        setpgid(0, 0);
        tick(&sh->c1);
    }
    setpgid(c1, c1);
    while (!sh->c1)
        wl_sleep_ms(1);
    /* Its group is not orphaned (we are its parent, in the same session). */
    kill(c1, SIGTSTP);
    if (waitpid(c1, &st, WUNTRACED) != c1 || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGTSTP)
        wl_die("c1 was not stopped by SIGTSTP (status %#x)", st);

    if ((c2 = fork_or_die()) == 0) {
        raise(SIGSTOP);
        tick(&sh->c2);
    }
    wait_stopped(c2, "c2");

    if ((c3 = fork_or_die()) == 0) {
        pthread_t t;
        for (uintptr_t i = 1; i < 3; i++)
            if (pthread_create(&t, NULL, c3_thread, (void *)i) != 0)
                wl_die("pthread_create");
        sh->c3_ready = 1;
        tick(&sh->c3[0]);
    }
    while (!sh->c3_ready || !sh->c3[1] || !sh->c3[2])
        wl_sleep_ms(1);
    kill(c3, SIGSTOP);
    if (waitpid(c3, &st, WUNTRACED) != c3 || !WIFSTOPPED(st))
        wl_die("c3 was not stopped (status %#x)", st);
    wait_stopped(c3, "c3");
    /* Stays pending while c3 is stopped (no thread takes it); SIGCONT flushes it. */
    kill(c3, SIGSTOP);

    if ((c4 = fork_or_die()) == 0) {
        setpgid(0, 0);
        c4_main();
    }
    setpgid(c4, c4);
    while (!sh->c4_pending)
        wl_sleep_ms(1);

    static char summary[160];
    snprintf(summary, sizeof summary, "c1 %d c2 %d c3 %d stopped, c4 %d running with SIGTSTP pending", (int)c1,
             (int)c2, (int)c3, (int)c4);
    wl_ready(ctl);
    wl_serve(ctl, verify_tree, NULL, summary);
}

static pid_t tracee, tracee_child;

static void verify_tracer(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    int st;
    wl_check(c, waitpid(tracee, &st, WNOHANG | __WALL) == 0, "tracee %d changed state", (int)tracee);
    if (exiting && tracee_child) {
        kill(tracee_child, SIGKILL);
        waitpid(tracee_child, NULL, __WALL);
    }
}

/* Traces `pid` (or a child of its own when 0) until told to exit. */
static void run_tracer(const char *ctl, pid_t pid)
{
    tracee = pid;
    if (!tracee) {
        if ((tracee_child = fork_or_die()) == 0)
            for (;;)
                pause();
        tracee = tracee_child;
    }
    if (ptrace(PTRACE_SEIZE, tracee, NULL, NULL) != 0)
        wl_die("PTRACE_SEIZE %d", (int)tracee);
    static char summary[64];
    snprintf(summary, sizeof summary, "tracing %d", (int)tracee);
    wl_ready(ctl);
    wl_serve(ctl, verify_tracer, NULL, summary);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: jobctl CTL tree|tracer|trace PID");
    if (strcmp(argv[2], "tree") == 0)
        run_tree(argv[1]);
    else if (strcmp(argv[2], "tracer") == 0)
        run_tracer(argv[1], 0);
    else if (strcmp(argv[2], "trace") == 0 && argc > 3)
        run_tracer(argv[1], atoi(argv[3]));
    wl_die("unknown mode %s", argv[2]);
}
