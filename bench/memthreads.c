/* memthreads: benchmark workload for cryo's thread costs (see bench/README.md).
 *
 *   memthreads CTL_DIR MIB THREADS
 *
 * memtouch (same MIB memory, same pattern, same control files) with THREADS
 * threads in all: the main thread and THREADS-1 workers. Each worker loops in
 * nanosleep(20 ms) and counts its wake-ups in its own slot.  It writes
 * CTL_DIR/ready once every worker has counted once.
 *
 * On CTL_DIR/verify the main thread checks every page, that /proc/self/task
 * lists THREADS tasks, and that every worker's count advances within 2 s (all
 * threads came back and run), then writes CTL_DIR/result: "OK <n> pages
 * <t> threads" or "FAIL ...". "exit" in verify makes it exit 0 (OK) / 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>

#include "membench.h"

#define MAX_THREADS 1024

static volatile long g_counts[MAX_THREADS];

static void *worker(void *arg)
{
    volatile long *count = arg;
    for (;;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        __atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Index of a worker whose count does not advance within 2 s, or 0. */
static int stuck_worker(int threads)
{
    long before[MAX_THREADS];
    for (int i = 1; i < threads; i++)
        before[i] = __atomic_load_n(&g_counts[i], __ATOMIC_RELAXED);
    int stuck = 0;
    for (int tries = 0; tries < 200; tries++) {
        stuck = 0;
        for (int i = 1; i < threads && !stuck; i++)
            if (__atomic_load_n(&g_counts[i], __ATOMIC_RELAXED) == before[i])
                stuck = i;
        if (!stuck)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return stuck;
}

int main(int argc, char **argv)
{
    g_prog = "memthreads";
    if (argc != 4) {
        fprintf(stderr, "usage: %s CTL_DIR MIB THREADS   (1 <= THREADS <= %d)\n", argv[0], MAX_THREADS);
        return 2;
    }
    g_ctl = argv[1];
    uint64_t pages;
    uint64_t *mem = map_and_fill(parse_mib(argv[2]), &pages);
    const int threads = atoi(argv[3]);
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "memthreads: bad THREADS %s\n", argv[3]);
        return 2;
    }
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 << 10);
        errno = pthread_create(&t, &attr, worker, (void *)&g_counts[i]);
        if (errno)
            die("pthread_create");
        pthread_attr_destroy(&attr);
    }
    for (int i = 1; i < threads; i++)
        while (__atomic_load_n(&g_counts[i], __ATOMIC_RELAXED) == 0) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }

    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (write_ctl("ready", buf) != 0)
        die("write ready");

    for (;;) {
        int do_exit = wait_verify();
        char msg[256];
        int ok = check_pages(mem, pages, msg, sizeof msg);
        if (ok) {
            int tasks = count_tasks(), stuck = tasks == threads ? stuck_worker(threads) : 0;
            if (tasks != threads) {
                snprintf(msg, sizeof msg, "FAIL %d tasks in /proc/self/task, expected %d\n", tasks, threads);
                ok = 0;
            } else if (stuck) {
                snprintf(msg, sizeof msg, "FAIL worker %d of %d does not run (count %ld)\n", stuck, threads,
                         g_counts[stuck]);
                ok = 0;
            } else {
                snprintf(msg, sizeof msg, "OK %llu pages %d threads\n", (unsigned long long)pages, threads);
            }
        }
        if (write_ctl("result", msg) != 0)
            die("write result");
        if (do_exit)
            return ok ? 0 : 1;
    }
}
