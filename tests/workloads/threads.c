/* threads: a multi-threaded process whose threads hold per-thread state.
 *
 * Usage: threads CTL_DIR NTHREADS
 *
 * Thread i (0-based) has a __thread value, a name ("wk-<i>"), its TID recorded
 * at start, and a blocked signal mask of its own (SIGUSR1 blocked in odd
 * threads). Kinds, by i % 6: 0 spins incrementing a counter; 1 loops in
 * nanosleep(5 ms); 2 waits in pthread_cond_wait (futex) until woken by a
 * verify; 3 loops in a futex wait with a 20 ms timeout; 4 blocks in read(2)
 * on a pipe of its own until a verify writes a byte; 5 loops in
 * epoll_wait(2) (10 ms timeout) on an eventfd; 6 blocks in accept(2) on a
 * TCP socket of its own listening on 127.0.0.1, until a verify connects.
 * On verify the main thread bumps a generation, wakes the waiters, and every
 * thread checks its own state (tid, TLS, name, mask) and reports; the main
 * thread then checks every report and that counters advance.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <dirent.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include "wl_common.h"

#define MAX_THREADS 128
#define KINDS 7

static __thread long tls_value;
static int nthreads;

struct worker {
    pthread_t th;
    int idx;
    pid_t tid;
    volatile long counter;
    volatile int checked_gen;   /* generation the thread last checked */
    volatile int ok;            /* result of that check */
    int pipe[2];                /* kind 4: woken by a byte */
    int listener;               /* kind 6: woken by a connection */
    struct sockaddr_in addr;
    char what[160];
};

static struct worker workers[MAX_THREADS];
static volatile int generation;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int futex_word;
static int epoll_fd;

static void self_check(struct worker *w)
{
    int gen = generation;
    if (w->checked_gen == gen)
        return;
    char name[32], want[32];
    snprintf(want, sizeof want, "wk-%d", w->idx);
    pthread_getname_np(pthread_self(), name, sizeof name);
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    int blocked = sigismember(&cur, SIGUSR1);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    w->ok = 1;
    if (tid != w->tid) {
        w->ok = 0;
        snprintf(w->what, sizeof w->what, "thread %d tid expected %d actual %d", w->idx, w->tid, tid);
    } else if (tls_value != 1000L * w->idx + 7) {
        w->ok = 0;
        snprintf(w->what, sizeof w->what, "thread %d __thread value expected %ld actual %ld", w->idx,
                 1000L * w->idx + 7, tls_value);
    } else if (strcmp(name, want) != 0) {
        w->ok = 0;
        snprintf(w->what, sizeof w->what, "thread %d name expected %s actual %s", w->idx, want, name);
    } else if (blocked != (w->idx & 1)) {
        w->ok = 0;
        snprintf(w->what, sizeof w->what, "thread %d SIGUSR1 blocked expected %d actual %d", w->idx, w->idx & 1,
                 blocked);
    }
    __atomic_store_n(&w->checked_gen, gen, __ATOMIC_RELEASE);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->tid = (pid_t)syscall(SYS_gettid);
    tls_value = 1000L * w->idx + 7;
    char name[32];
    snprintf(name, sizeof name, "wk-%d", w->idx);
    pthread_setname_np(pthread_self(), name);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask((w->idx & 1) ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
    for (;;) {
        self_check(w);
        switch (w->idx % KINDS) {
        case 0:
            for (int i = 0; i < 100000; i++)
                w->counter++;
            break;
        case 1: {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
            w->counter++;
            break;
        }
        case 2:
            pthread_mutex_lock(&mu);
            while (w->checked_gen == generation)
                pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            w->counter++;
            break;
        case 3: {
            struct timespec ts = {0, 20000000};
            syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
            w->counter++;
            break;
        }
        case 4: {
            char byte;
            if (read(w->pipe[0], &byte, 1) == 1)
                w->counter++;
            break;
        }
        case 5: {
            struct epoll_event ev;
            epoll_wait(epoll_fd, &ev, 1, 10);
            w->counter++;
            break;
        }
        default: {
            int c = accept(w->listener, NULL, NULL);
            if (c >= 0) {
                w->counter++;
                close(c);
            }
            break;
        }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        wl_die("usage: %s CTL_DIR NTHREADS", argv[0]);
    const char *ctl = argv[1];
    nthreads = atoi(argv[2]);
    if (nthreads < 1 || nthreads > MAX_THREADS)
        wl_die("NTHREADS must be 1..%d", MAX_THREADS);
    const pid_t my_pid = wl_getpid();
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(0, EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
    if (epoll_fd < 0 || efd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, efd, &ev) != 0)
        wl_die("epoll setup");
    for (int i = 0; i < nthreads; i++) {
        if (i % KINDS == 4 && pipe2(workers[i].pipe, O_CLOEXEC) != 0)
            wl_die("pipe");
        if (i % KINDS == 6) {
            struct sockaddr_in *a = &workers[i].addr;
            a->sin_family = AF_INET;
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t len = sizeof *a;
            workers[i].listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            /* As servers do: the connections it closed linger in TIME_WAIT on
             * its port, and without SO_REUSEADDR the kernel refuses any bind
             * to it (a restart, or a restore) until they are gone. */
            int one = 1;
            if (workers[i].listener < 0 ||
                setsockopt(workers[i].listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || bind(workers[i].listener, (struct sockaddr *)a, sizeof *a) != 0 ||
                listen(workers[i].listener, 8) != 0 ||
                getsockname(workers[i].listener, (struct sockaddr *)a, &len) != 0)
                wl_die("listening socket");
        }
        workers[i].idx = i;
        workers[i].checked_gen = -1;
        if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0)
            wl_die("pthread_create %d", i);
    }
    /* Everyone has run its first self-check at generation 0. */
    for (int spins = 0;; spins++) {
        int all = 1;
        for (int i = 0; i < nthreads; i++)
            all &= workers[i].checked_gen == 0;
        if (all)
            break;
        if (spins > 5000)
            wl_die("threads did not start");
        wl_sleep_ms(1);
    }
    wl_ready(ctl);
    int verifies = 0;
    for (;;) {
        wl_sleep_ms(10);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        verifies++;
        struct wl_checks c;
        wl_checks_init(&c);
        wl_check(&c, wl_getpid() == my_pid, "pid expected %d actual %d", (int)my_pid, (int)wl_getpid());
        long before[MAX_THREADS];
        for (int i = 0; i < nthreads; i++)
            before[i] = workers[i].counter;
        pthread_mutex_lock(&mu);
        __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < nthreads; i++) {
            if (i % KINDS == 4 && write(workers[i].pipe[1], "w", 1) != 1)
                wl_check(&c, 0, "waking thread %d failed", i);
            if (i % KINDS == 6) {
                int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (s < 0 || connect(s, (struct sockaddr *)&workers[i].addr, sizeof workers[i].addr) != 0)
                    wl_check(&c, 0, "connecting to thread %d on port %d failed (errno %d)", i,
                             ntohs(workers[i].addr.sin_port), errno);
                if (s >= 0)
                    close(s);
            }
        }
        int gen = generation;
        uint64_t deadline = wl_now_ns() + 5000000000ull;
        for (int i = 0; i < nthreads; i++) {
            while (__atomic_load_n(&workers[i].checked_gen, __ATOMIC_ACQUIRE) != gen && wl_now_ns() < deadline)
                wl_sleep_ms(1);
            wl_check(&c, workers[i].checked_gen == gen, "thread %d did not report within 5 s (kind %d)", i, i % KINDS);
            if (workers[i].checked_gen == gen)
                wl_check(&c, workers[i].ok, "%s", workers[i].what);
        }
        wl_sleep_ms(100);
        for (int i = 0; i < nthreads; i++)
            if (i % KINDS != 2)
                wl_check(&c, workers[i].counter > before[i], "thread %d (kind %d) counter did not advance (%ld)", i,
                         i % KINDS, workers[i].counter);
        char task_dir[64];
        snprintf(task_dir, sizeof task_dir, "/proc/%d/task", (int)my_pid);
        int ntasks = 0;
        DIR *d = opendir(task_dir);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)))
                ntasks += e->d_name[0] != '.';
            closedir(d);
        }
        wl_check(&c, ntasks == nthreads + 1, "tasks expected %d actual %d", nthreads + 1, ntasks);
        char summary[128];
        snprintf(summary, sizeof summary, "threads=%d verifies=%d", nthreads, verifies);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT)
            return ok ? 0 : 1;
    }
}
