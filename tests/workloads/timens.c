/* timens: a process in a time namespace with clock offsets, run as
 *   unshare --time --monotonic MONO --boottime BOOT --fork -- timens CTL MONO BOOT
 * (tests/e2e/test_timens.py). Writes its pid to <ctl>/ready. On every verify
 * it checks that:
 *  - CLOCK_MONOTONIC and CLOCK_BOOTTIME never went back since the previous
 *    verify (a restore outside the namespace would move them back by the
 *    offsets) and are at least MONO and BOOT seconds;
 *  - /proc/self/timens_offsets shows MONO and BOOT (the offsets of its
 *    time_for_children), and time_for_children is the namespace it lives in;
 *  - a child forked now reads a CLOCK_MONOTONIC at least MONO seconds too.
 *
 * Usage: timens CTL_DIR MONO_SECONDS BOOT_SECONDS [self]
 * With "self" (the kernel matrix, where no unshare(1) has --time) it makes
 * the namespace itself as `unshare --fork` does: unshare(CLONE_NEWTIME), the
 * offsets written, then a child that is the workload while this process
 * waits for it and exits with its status.
 */
#include "wl_common.h"

#include <sched.h>
#include <sys/wait.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

struct state {
    long long mono_s, boot_s;
    uint64_t last_mono, last_boot;
    int verifies;
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void ns_link(const char *name, char *out, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", name);
    ssize_t r = readlink(path, out, n - 1);
    out[r < 0 ? 0 : r] = 0;
}

/* A child's CLOCK_MONOTONIC, through a pipe (0 if it failed). */
static uint64_t child_mono(void)
{
    int p[2];
    if (pipe(p) != 0)
        return 0;
    pid_t c = fork();
    if (c == 0) {
        uint64_t v = clock_ns(CLOCK_MONOTONIC);
        _exit(write(p[1], &v, sizeof v) == sizeof v ? 0 : 1);
    }
    close(p[1]);
    uint64_t v = 0;
    if (c < 0 || read(p[0], &v, sizeof v) != sizeof v)
        v = 0;
    close(p[0]);
    if (c > 0)
        waitpid(c, NULL, 0);
    return v;
}

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    struct state *st = arg;
    const uint64_t mono = clock_ns(CLOCK_MONOTONIC), boot = clock_ns(CLOCK_BOOTTIME);
    wl_check(c, mono >= st->last_mono, "CLOCK_MONOTONIC went back by %.3f s (%llu -> %llu ns)",
             (double)(st->last_mono - mono) / 1e9, (unsigned long long)st->last_mono, (unsigned long long)mono);
    wl_check(c, boot >= st->last_boot, "CLOCK_BOOTTIME went back by %.3f s (%llu -> %llu ns)",
             (double)(st->last_boot - boot) / 1e9, (unsigned long long)st->last_boot, (unsigned long long)boot);
    wl_check(c, mono / 1000000000ULL >= (uint64_t)st->mono_s, "CLOCK_MONOTONIC %llu s is below its offset %lld s",
             (unsigned long long)(mono / 1000000000ULL), st->mono_s);
    wl_check(c, boot / 1000000000ULL >= (uint64_t)st->boot_s, "CLOCK_BOOTTIME %llu s is below its offset %lld s",
             (unsigned long long)(boot / 1000000000ULL), st->boot_s);
    char text[256] = "";
    int fd = open("/proc/self/timens_offsets", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    text[n < 0 ? 0 : n] = 0;
    long long ms = -1, mn = -1, bs = -1, bn = -1;
    const char *m = strstr(text, "monotonic"), *b = strstr(text, "boottime");
    if (m)
        sscanf(m, "monotonic %lld %lld", &ms, &mn);
    if (b)
        sscanf(b, "boottime %lld %lld", &bs, &bn);
    for (char *q = text; *q; q++)
        if (*q == '\n')
            *q = ' ';
    wl_check(c, ms == st->mono_s && mn == 0 && bs == st->boot_s && bn == 0,
             "timens_offsets: expected monotonic %lld 0, boottime %lld 0, actual \"%s\"", st->mono_s, st->boot_s,
             text);
    char t[64], tfc[64];
    ns_link("time", t, sizeof t);
    ns_link("time_for_children", tfc, sizeof tfc);
    wl_check(c, strcmp(t, tfc) == 0, "time namespace %s, for its children %s", t, tfc);
    const uint64_t cm = child_mono();
    wl_check(c, cm / 1000000000ULL >= (uint64_t)st->mono_s, "a child's CLOCK_MONOTONIC %llu s is below the offset",
             (unsigned long long)(cm / 1000000000ULL));
    st->last_mono = mono;
    st->last_boot = boot;
    st->verifies++;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "self") == 0)) {
        fprintf(stderr, "usage: %s CTL_DIR MONO_SECONDS BOOT_SECONDS [self]\n", argv[0]);
        return 2;
    }
    if (argc == 5) {
        char text[128];
        int n = snprintf(text, sizeof text, "monotonic %s 0\nboottime %s 0\n", argv[2], argv[3]);
        if (unshare(CLONE_NEWTIME) != 0)
            wl_die("unshare(CLONE_NEWTIME)");
        int fd = open("/proc/self/timens_offsets", O_WRONLY);
        if (fd < 0 || write(fd, text, (size_t)n) != n)
            wl_die("writing /proc/self/timens_offsets");
        close(fd);
        pid_t c = fork();
        if (c < 0)
            wl_die("fork");
        if (c > 0) {
            int status;
            while (waitpid(c, &status, 0) < 0)
                if (errno != EINTR)
                    wl_die("waitpid");
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
    static struct state st;
    st.mono_s = atoll(argv[2]);
    st.boot_s = atoll(argv[3]);
    st.last_mono = clock_ns(CLOCK_MONOTONIC);
    st.last_boot = clock_ns(CLOCK_BOOTTIME);
    wl_ready(argv[1]);
    wl_serve(argv[1], check, &st, "timens");
}
