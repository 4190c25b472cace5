/* cgroup membership (tests/e2e/test_taskstate.py): a root and one child.
 * Once the test has moved both into their cgroups and written CTL/placed,
 * the root records /proc/self/cgroup and the child's, then is ready.
 * verify: both are in the same cgroups as recorded (and the child still
 * runs); "exit" kills the child and exits.
 *
 * Usage: cgroups CTL
 */
#include <signal.h>
#include <sys/wait.h>

#include "wl_common.h"

static int read_cgroups(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : wl_pread_full(fd, buf, size - 1, 0);
    if (fd >= 0)
        close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static pid_t child;
static char mine[4096], theirs[4096];

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    static char now[4096];
    wl_check(c, read_cgroups(wl_getpid(), now, sizeof now) == 0 && strcmp(now, mine) == 0,
             "root cgroups now [%s], expected [%s]", now, mine);
    wl_check(c, read_cgroups(child, now, sizeof now) == 0 && strcmp(now, theirs) == 0,
             "child cgroups now [%s], expected [%s]", now, theirs);
    if (exiting) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2)
        wl_die("usage: cgroups CTL");
    const char *ctl = argv[1];
    child = fork();
    if (child < 0)
        wl_die("fork");
    if (child == 0)
        for (;;)
            pause();
    char placed[WL_PATH_MAX];
    wl_path(placed, sizeof placed, ctl, "placed");
    while (access(placed, F_OK) != 0)
        wl_sleep_ms(5);
    if (read_cgroups(wl_getpid(), mine, sizeof mine) != 0 || read_cgroups(child, theirs, sizeof theirs) != 0)
        wl_die("reading /proc/PID/cgroup");
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "root and child in their cgroups");
}
