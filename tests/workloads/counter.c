/* counter: the demo workload.
 *
 * Prints "count N" once per 200 ms to stdout (flushed per line), N starting
 * at 1 and continuing from wherever it was after a restore.  On verify it
 * checks that N has increased since the previous verify (or since start)
 * and that its pid is unchanged.
 *
 * Usage: counter CTL_DIR
 */
#include "wl_common.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CTL_DIR\n", argv[0]);
        return 2;
    }
    const char *ctl = argv[1];
    const pid_t my_pid = wl_getpid();
    long count = 0;
    long prev_verified = 0; /* count at the previous verify (0 = at start) */
    int verifies = 0;

    /* first line before ready so the output file is never empty */
    printf("count %ld\n", ++count);
    fflush(stdout);
    wl_ready(ctl);

    for (;;) {
        for (int tick = 0; tick < 20; tick++) { /* 20 x 10 ms = 200 ms */
            wl_sleep_ms(10);
            int req = wl_poll_verify(ctl);
            if (req == WL_VERIFY_NONE)
                continue;
            struct wl_checks c;
            wl_checks_init(&c);
            pid_t now_pid = wl_getpid();
            wl_check(&c, now_pid == my_pid, "pid: expected %d actual %d", (int)my_pid,
                     (int)now_pid);
            wl_check(&c, count > prev_verified,
                     "count did not increase since previous verify: expected > %ld actual %ld",
                     prev_verified, count);
            verifies++;
            char summary[256];
            snprintf(summary, sizeof summary, "counter count=%ld prev=%ld verifies=%d checks=%d",
                     count, prev_verified, verifies, c.total);
            int ok = wl_report(ctl, &c, summary);
            prev_verified = count;
            if (req == WL_VERIFY_EXIT)
                return ok ? 0 : 1;
        }
        if (printf("count %ld\n", ++count) < 0 || fflush(stdout) != 0) {
            perror("counter: write stdout");
            return 3;
        }
    }
}
