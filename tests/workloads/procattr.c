/* Per-process and per-thread attributes (tests/e2e/test_taskstate.py).
 *
 *   procattr CTL            sets, and verifies:
 *       oom_score_adj 500, coredump_filter 0x7f, dumpable 0, its autogroup's nice 5 (it
 *       leads its session); main thread: CPU 0 only, I/O priority idle;
 *       thread 2: CPU 1 only, I/O priority best-effort 3, SCHED_BATCH nice 7;
 *       thread 3: SCHED_DEADLINE (1 ms every 100 ms);
 *       its audit loginuid and session id as they were at its start.
 *   procattr CTL new-session   also forks a child that writes its own
 *       loginuid (a new audit session): a tree a restore cannot rebuild.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "wl_common.h"

#define IOPRIO(class, data) (((class) << 13) | (data))
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_IDLE 3
#define IOPRIO_WHO_PROCESS 1
#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif

struct sched_attr_k {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static long read_long(const char *path, int base)
{
    char buf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : wl_pread_full(fd, buf, sizeof buf - 1, 0);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -99999;
    buf[n] = '\0';
    const char *p = strstr(buf, " nice ");
    return strtol(p ? p + 6 : buf, NULL, base);
}

static void write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        wl_die("write %s to %s", s, path);
    close(fd);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        wl_die("sched_setaffinity %d", cpu);
}

static pid_t tid2, tid3;
/* Set by each thread once its own attributes are in place. */
static atomic_int set_up;

static void *thread2(void *arg)
{
    (void)arg;
    tid2 = (pid_t)syscall(SYS_gettid);
    pin(1);
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO(IOPRIO_CLASS_BE, 3)) != 0)
        wl_die("ioprio_set");
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0 || setpriority(PRIO_PROCESS, 0, 7) != 0)
        wl_die("SCHED_BATCH");
    atomic_fetch_add(&set_up, 1);
    for (;;)
        wl_sleep_ms(50);
    return NULL;
}

static void *thread3(void *arg)
{
    (void)arg;
    tid3 = (pid_t)syscall(SYS_gettid);
    /* A deadline task must be allowed every CPU of its root domain. */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    if (sched_setaffinity(0, sizeof all, &all) != 0)
        wl_die("sched_setaffinity (all)");
    struct sched_attr_k a = {sizeof a, SCHED_DEADLINE, 0, 0, 0, 1000000, 100000000, 100000000};
    if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
        wl_die("SCHED_DEADLINE");
    atomic_fetch_add(&set_up, 1);
    for (;;)
        wl_sleep_ms(50);
    return NULL;
}

static int cpus_of(pid_t tid)
{
    cpu_set_t set;
    if (sched_getaffinity(tid, sizeof set, &set) != 0)
        return -1;
    int bits = 0;
    for (int c = 0; c < 8; c++)
        if (CPU_ISSET(c, &set))
            bits |= 1 << c;
    return bits;
}

static long loginuid, sessionid;
static pid_t child;

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    long v;
    v = read_long("/proc/self/oom_score_adj", 10);
    wl_check(c, v == 500, "oom_score_adj %ld, expected 500", v);
    v = read_long("/proc/self/coredump_filter", 16);
    wl_check(c, v == 0x7f, "coredump_filter %#lx, expected 0x7f", v);
    wl_check(c, prctl(PR_GET_DUMPABLE) == 0, "dumpable %d, expected 0", prctl(PR_GET_DUMPABLE));
    v = read_long("/proc/self/autogroup", 10);
    wl_check(c, v == 5, "autogroup nice %ld, expected 5", v);
    v = read_long("/proc/self/loginuid", 10);
    wl_check(c, v == loginuid, "loginuid %ld, expected %ld", v, loginuid);
    v = read_long("/proc/self/sessionid", 10);
    wl_check(c, v == sessionid, "audit session %ld, expected %ld", v, sessionid);
    pid_t me = wl_getpid();
    wl_check(c, cpus_of(me) == 1, "main thread CPUs %#x, expected CPU 0", cpus_of(me));
    wl_check(c, cpus_of(tid2) == 2, "thread 2 CPUs %#x, expected CPU 1", cpus_of(tid2));
    v = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, me);
    wl_check(c, v == IOPRIO(IOPRIO_CLASS_IDLE, 0), "main thread I/O priority %#lx", v);
    v = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid2);
    wl_check(c, v == IOPRIO(IOPRIO_CLASS_BE, 3), "thread 2 I/O priority %#lx", v);
    wl_check(c, sched_getscheduler(tid2) == SCHED_BATCH, "thread 2 policy %d", sched_getscheduler(tid2));
    errno = 0;
    v = getpriority(PRIO_PROCESS, (id_t)tid2);
    wl_check(c, v == 7, "thread 2 nice %ld, expected 7", v);
    struct sched_attr_k a;
    memset(&a, 0, sizeof a);
    long r = syscall(SYS_sched_getattr, tid3, &a, sizeof a, 0);
    wl_check(c, r == 0 && a.policy == SCHED_DEADLINE && a.runtime == 1000000 && a.period == 100000000,
             "thread 3: policy %u runtime %llu period %llu, expected SCHED_DEADLINE 1 ms / 100 ms", a.policy,
             (unsigned long long)a.runtime, (unsigned long long)a.period);
    if (exiting && child) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: procattr CTL [new-session]");
    const char *ctl = argv[1];
    loginuid = read_long("/proc/self/loginuid", 10);
    sessionid = read_long("/proc/self/sessionid", 10);
    if (argc > 2 && strcmp(argv[2], "new-session") == 0) {
        if ((child = fork()) < 0)
            wl_die("fork");
        if (child == 0) {
            write_str("/proc/self/loginuid", "4321");
            for (;;)
                pause();
        }
    }
    write_str("/proc/self/oom_score_adj", "500");
    write_str("/proc/self/coredump_filter", "0x7f");
    if (prctl(PR_SET_DUMPABLE, 0) != 0)
        wl_die("PR_SET_DUMPABLE");
    /* The autogroup is the session's: never touch a session it does not lead. */
    if (getsid(0) != getpid())
        wl_die("procattr must lead its session");
    write_str("/proc/self/autogroup", "5");
    pin(0);
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO(IOPRIO_CLASS_IDLE, 0)) != 0)
        wl_die("ioprio_set");
    pthread_t t;
    if (pthread_create(&t, NULL, thread2, NULL) != 0 || pthread_create(&t, NULL, thread3, NULL) != 0)
        wl_die("pthread_create");
    while (atomic_load(&set_up) < 2) /* bounded by the harness's wait for ready */
        wl_sleep_ms(1);
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "oom_score_adj, coredump_filter, autogroup, audit, affinity, ioprio, scheduling");
}
