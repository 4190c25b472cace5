/* seccomp: a process whose seccomp filters must come back (tests/e2e/test_seccomp.py).
 *   seccomp CTL MODE
 * MODE:
 *   filter     no_new_privs, then four filters: getsid -> ENOENT, getppid ->
 *              EPERM, (with SECCOMP_FILTER_FLAG_LOG) acct ->
 *              SECCOMP_RET_KILL_PROCESS, getsid -> ESRCH (the newest of two
 *              equal actions decides: the order must be kept).
 *   mmapblock  filter's four, then a fifth making mmap, munmap, mremap and
 *              mprotect fail with EPERM: cryo's own remote mmap/munmap would
 *              be refused too unless the filters are suspended while it works.
 *   killmunmap filter's four, then a fifth killing the process on munmap
 *              (SECCOMP_RET_KILL_PROCESS): were cryo killed in the middle of
 *              its remote calls, the way back of its injected code (munmap
 *              of its scratch memory) would meet it: refused by name.
 *   threads    two threads; the leader installs getppid -> EPERM with
 *              SECCOMP_FILTER_FLAG_TSYNC (all three share that filter), then
 *              the second thread adds getpgrp -> EACCES on itself only.
 *   strict     a thread in SECCOMP_MODE_STRICT echoing bytes over two pipes.
 *   notif      a filter handing getppid to a supervisor (SECCOMP_RET_USER_NOTIF,
 *              SECCOMP_FILTER_FLAG_NEW_LISTENER), whose fd it then closes:
 *              cryo refuses it by name.
 * verify checks, in every thread concerned: the filtered calls are still
 * filtered, the others work (getpid, getpgrp), /proc status Seccomp and
 * Seccomp_filters per thread; in filter/mmapblock a forked child calling
 * acct is killed by SIGSYS; in threads a TSYNC filter from the leader fails
 * naming the second thread (the first still shares the leader's filter).
 * Protocol: wl_common.h.
 */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "wl_common.h"

static const char *mode;
static pid_t tids[3];
static int to_thread[2], from_thread[2];

/* Results of the per-thread checks, asked by the leader. */
static int request, done[3];
static int ppid_errno[3], pgrp_errno[3];

static int is(const char *m) { return strcmp(mode, m) == 0; }

/* A filter: on x86_64, syscall `nr` returns `action`, everything else is allowed. */
static int install(const int *nrs, int n, unsigned action, unsigned flags)
{
    struct sock_filter f[16];
    int k = 0;
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int i = 0; i < n; i++)
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], (unsigned char)(n - i), 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
    struct sock_fprog prog = {.len = (unsigned short)k, .filter = f};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void install_or_die(const int *nrs, int n, unsigned action, unsigned flags)
{
    if (install(nrs, n, action, flags) != 0)
        wl_die("seccomp(SECCOMP_SET_MODE_FILTER)");
}

static int status_field(pid_t tid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    int v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = atoi(line + kl + 1);
    if (f)
        fclose(f);
    return v;
}

static void probe(int i)
{
    errno = 0;
    ppid_errno[i] = syscall(SYS_getppid) < 0 ? errno : 0;
    errno = 0;
    pgrp_errno[i] = syscall(SYS_getpgrp) < 0 ? errno : 0;
}

static void *thread_main(void *arg)
{
    int i = (int)(long)arg;
    __atomic_store_n(&tids[i], (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
    if (is("strict")) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
            wl_die("PR_SET_SECCOMP strict");
        unsigned char c;
        for (;;) {
            if (read(to_thread[0], &c, 1) != 1)
                syscall(SYS_exit, 1);
            c++;
            if (write(from_thread[1], &c, 1) != 1)
                syscall(SYS_exit, 1);
        }
    }
    /* The second thread waits for the leader's TSYNC filter, then adds its own. */
    while (__atomic_load_n(&request, __ATOMIC_SEQ_CST) == 0)
        wl_sleep_ms(1);
    if (i == 2) {
        const int nr = SYS_getpgrp;
        install_or_die(&nr, 1, SECCOMP_RET_ERRNO | EACCES, 0);
    }
    int seen = 1;
    __atomic_store_n(&done[i], seen, __ATOMIC_SEQ_CST);
    for (;;) {
        int r = __atomic_load_n(&request, __ATOMIC_SEQ_CST);
        if (r != seen) {
            probe(i);
            seen = r;
            __atomic_store_n(&done[i], r, __ATOMIC_SEQ_CST);
        }
        wl_sleep_ms(1);
    }
    return NULL;
}

static void check_acct_kills(struct wl_checks *c)
{
    pid_t p = fork();
    if (p < 0)
        wl_die("fork");
    if (p == 0) {
        syscall(SYS_acct, NULL);
        _exit(0);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
        ;
    wl_check(c, WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "a child calling acct: wait status 0x%x, expected SIGSYS",
             st);
}

static void check_state(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    const pid_t me = wl_getpid();
    if (is("strict")) {
        unsigned char b = 41, got = 0;
        wl_check(c, write(to_thread[1], &b, 1) == 1, "write to the strict thread");
        struct pollfd pfd = {.fd = from_thread[0], .events = POLLIN};
        wl_check(c, poll(&pfd, 1, 10000) == 1 && read(from_thread[0], &got, 1) == 1 && got == 42,
                 "the strict thread answered %d, expected 42", got);
        wl_check(c, status_field(tids[1], "Seccomp") == 1, "thread Seccomp %d, expected 1",
                 status_field(tids[1], "Seccomp"));
        wl_check(c, status_field(me, "Seccomp") == 0, "leader Seccomp %d, expected 0", status_field(me, "Seccomp"));
        return;
    }
    errno = 0;
    long r = syscall(SYS_getppid);
    if (is("notif")) { /* no listener any more: ENOSYS (seccomp_do_user_notification) */
        wl_check(c, r == -1 && errno == ENOSYS, "getppid returned %ld errno %d, expected ENOSYS", r, errno);
        return;
    }
    wl_check(c, r == -1 && errno == EPERM, "getppid returned %ld errno %d, expected EPERM", r, errno);
    wl_check(c, syscall(SYS_getpid) == me, "getpid does not work");
    wl_check(c, syscall(SYS_getpgrp) > 0, "getpgrp does not work in the leader");
    int want = is("filter") ? 4 : (is("mmapblock") || is("killmunmap")) ? 5 : 1;
    wl_check(c, status_field(me, "Seccomp") == 2, "leader Seccomp %d, expected 2", status_field(me, "Seccomp"));
    wl_check(c, status_field(me, "Seccomp_filters") == want, "leader Seccomp_filters %d, expected %d",
             status_field(me, "Seccomp_filters"), want);
    if (is("filter") || is("mmapblock") || is("killmunmap")) {
        check_acct_kills(c);
        errno = 0;
        r = syscall(SYS_getsid, 0);
        wl_check(c, r == -1 && errno == ESRCH, "getsid returned %ld errno %d, expected ESRCH (the newest filter's)", r,
                 errno);
    }
    if (is("mmapblock")) {
        void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        wl_check(c, p == MAP_FAILED && errno == EPERM, "mmap returned %p errno %d, expected EPERM", p, errno);
    }
    if (is("threads")) {
        int r2 = __atomic_add_fetch(&request, 1, __ATOMIC_SEQ_CST);
        for (int i = 1; i <= 2; i++)
            while (__atomic_load_n(&done[i], __ATOMIC_SEQ_CST) != r2)
                wl_sleep_ms(1);
        for (int i = 1; i <= 2; i++) {
            wl_check(c, ppid_errno[i] == EPERM, "thread %d: getppid errno %d, expected EPERM", i, ppid_errno[i]);
            int pw = i == 2 ? EACCES : 0;
            wl_check(c, pgrp_errno[i] == pw, "thread %d: getpgrp errno %d, expected %d", i, pgrp_errno[i], pw);
            int fw = i == 2 ? 2 : 1;
            wl_check(c, status_field(tids[i], "Seccomp_filters") == fw, "thread %d: Seccomp_filters %d, expected %d",
                     i, status_field(tids[i], "Seccomp_filters"), fw);
        }
        /* TSYNC fails naming the first thread whose filter is not an ancestor of
         * the leader's: the second (the first shares the leader's). */
        const int nr = SYS_getppid;
        int t = install(&nr, 1, SECCOMP_RET_ERRNO | EPERM, SECCOMP_FILTER_FLAG_TSYNC);
        wl_check(c, t == tids[2], "TSYNC from the leader returned %d, expected the second thread %d", t, (int)tids[2]);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: seccomp CTL_DIR filter|mmapblock|threads|strict\n");
        return 2;
    }
    const char *ctl = argv[1];
    mode = argv[2];
    tids[0] = wl_getpid();
    if (!is("filter") && !is("mmapblock") && !is("threads") && !is("strict") && !is("notif") && !is("killmunmap"))
        wl_die("unknown mode %s", mode);
    if (pipe(to_thread) != 0 || pipe(from_thread) != 0)
        wl_die("pipe");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        wl_die("PR_SET_NO_NEW_PRIVS");
    pthread_t th;
    if (is("threads") || is("strict")) {
        for (long i = 1; i <= (is("strict") ? 1 : 2); i++)
            if (pthread_create(&th, NULL, thread_main, (void *)i) != 0)
                wl_die("pthread_create");
        for (int i = 1; i <= (is("strict") ? 1 : 2); i++)
            while (__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST) == 0)
                wl_sleep_ms(1);
    }
    const int ppid = SYS_getppid, acct = SYS_acct;
    if (is("threads")) {
        install_or_die(&ppid, 1, SECCOMP_RET_ERRNO | EPERM, SECCOMP_FILTER_FLAG_TSYNC);
        __atomic_store_n(&request, 1, __ATOMIC_SEQ_CST);
        for (int i = 1; i <= 2; i++)
            while (__atomic_load_n(&done[i], __ATOMIC_SEQ_CST) == 0)
                wl_sleep_ms(1);
    }
    if (is("filter") || is("mmapblock") || is("killmunmap")) {
        const int getsid_nr = SYS_getsid;
        install_or_die(&getsid_nr, 1, SECCOMP_RET_ERRNO | ENOENT, 0);
        install_or_die(&ppid, 1, SECCOMP_RET_ERRNO | EPERM, 0);
        install_or_die(&acct, 1, SECCOMP_RET_KILL_PROCESS, SECCOMP_FILTER_FLAG_LOG);
        /* Of two filters with the same action, the newest decides
         * (seccomp_run_filters): getsid fails with ESRCH only if the order is kept. */
        install_or_die(&getsid_nr, 1, SECCOMP_RET_ERRNO | ESRCH, 0);
    }
    if (is("notif")) {
        int fd = install(&ppid, 1, SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        if (fd < 0)
            wl_die("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)");
        close(fd);
    }
    if (is("strict"))
        wl_sleep_ms(20); /* the thread is in strict mode once it reads */
    /* Everything the serve loop needs is set up: the control files are opened
     * and written with open/write/rename only, which stay allowed. */
    if (is("mmapblock")) {
        const int mm[] = {SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect};
        install_or_die(mm, 4, SECCOMP_RET_ERRNO | EPERM, 0);
    }
    if (is("killmunmap")) {
        const int mu = SYS_munmap;
        install_or_die(&mu, 1, SECCOMP_RET_KILL_PROCESS, 0);
    }
    wl_ready(ctl);
    wl_serve(ctl, check_state, NULL, mode);
}
