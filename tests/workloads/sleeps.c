/* sleeps: threads asleep across a checkpoint, for the restart rules of
 * signal(7): a nanosleep(2) or clock_nanosleep(2) interrupted by a stop (the
 * freeze) is restarted by the kernel, not failed with EINTR; after a restore
 * it must go on sleeping for the time that was left.
 *
 * Usage: sleeps CTL_DIR
 *
 * Thread R loops in a relative clock_nanosleep of 700 ms (with a `rem`);
 * thread N in nanosleep of 700 ms without `rem`; thread A in an absolute
 * clock_nanosleep (TIMER_ABSTIME) 700 ms ahead. Each counts the sleeps that
 * returned 0 and those that failed (EINTR or else). Verify: no sleep failed,
 * every thread completed a sleep since the previous verify.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "wl_common.h"

#define SLEEP_NS 700000000L

enum { REL, NOREM, ABS, KINDS };
static const char *kNames[KINDS] = {"relative clock_nanosleep", "nanosleep without rem", "absolute clock_nanosleep"};

struct sleeper {
    pthread_t th;
    int kind;
    volatile long done, failed, last_errno;
};
static struct sleeper sleepers[KINDS];

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    for (;;) {
        struct timespec req = {0, SLEEP_NS}, rem = {0, 0};
        int r;
        if (s->kind == REL) {
            r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
        } else if (s->kind == NOREM) {
            r = nanosleep(&req, NULL) == 0 ? 0 : errno;
        } else {
            struct timespec at;
            clock_gettime(CLOCK_MONOTONIC, &at);
            at.tv_nsec += SLEEP_NS;
            if (at.tv_nsec >= 1000000000L) {
                at.tv_sec++;
                at.tv_nsec -= 1000000000L;
            }
            r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        }
        if (r == 0) {
            s->done++;
        } else {
            s->failed++;
            s->last_errno = r;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    const char *ctl = argv[1];
    for (int k = 0; k < KINDS; k++) {
        sleepers[k].kind = k;
        if (pthread_create(&sleepers[k].th, NULL, sleeper_main, &sleepers[k]) != 0)
            wl_die("pthread_create");
    }
    wl_ready(ctl);
    long seen[KINDS] = {0};
    for (;;) {
        wl_sleep_ms(10);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        struct wl_checks c;
        wl_checks_init(&c);
        /* Every thread completes a sleep within two periods. */
        uint64_t deadline = wl_now_ns() + 3 * (uint64_t)SLEEP_NS;
        for (int k = 0; k < KINDS; k++) {
            while (sleepers[k].done == seen[k] && wl_now_ns() < deadline)
                wl_sleep_ms(5);
            wl_check(&c, sleepers[k].done > seen[k], "%s: no sleep completed", kNames[k]);
            wl_check(&c, sleepers[k].failed == 0, "%s: %ld sleeps failed (last error %ld)", kNames[k],
                     sleepers[k].failed, sleepers[k].last_errno);
            seen[k] = sleepers[k].done;
        }
        int ok = wl_report(ctl, &c, "sleeps");
        if (req == WL_VERIFY_EXIT)
            return ok ? 0 : 1;
    }
}
