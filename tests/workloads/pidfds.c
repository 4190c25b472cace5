/* pidfds: holds pidfds and checks what they refer to (tests/e2e/test_pidfd.py).
 *
 * Default mode: forks a child C (which waits, and dies with us), then holds
 *   - fd A: pidfd_open(C, PIDFD_NONBLOCK), and fd A2, a dup of A;
 *   - fd S: pidfd_open(self, PIDFD_THREAD) (a plain one before Linux 6.9);
 *   - fd D: a pidfd of a child that exited with status 7 and was reaped.
 * verify checks each fd's fdinfo (Pid, flags), that A and A2 share one
 * description (F_SETFL on one shows on the other), poll (A: not readable,
 * D: readable), pidfd_send_signal (A: signal 0 reaches C; D: ESRCH), waitid
 * on D (ECHILD) and, where the kernel keeps it (PIDFD_GET_INFO, Linux 6.15+),
 * D's exit status. "exit" then kills C through A and waits for it through A
 * (waitid P_PIDFD): it must be C, killed by SIGTERM.
 * Mode "outside": holds a pidfd of its parent (outside the dumped tree).
 * Mode "shared": forks C after opening A, so that C inherits A.
 * Protocol: wl_common.h.
 */
#include "wl_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define PIDFD_THREAD_FLAG O_EXCL

struct pidfd_info_v0 {
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask, spare;
};
#define PIDFD_GET_INFO_IOCTL _IOWR(0xFF, 11, struct pidfd_info_v0)
#define PIDFD_INFO_EXIT_BIT (1ull << 3)

static pid_t child;
static int fd_a = -1, fd_a2 = -1, fd_s = -1, fd_d = -1;
static int self_flags;       /* flags fd S was opened with */
static int dead_status = -1; /* D's exit status the kernel showed at setup, -1: none */

static int pidfd_open_(pid_t pid, int flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }
static int send_signal(int pfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0); }

/* fdinfo "Pid:" of our fd (INT_MIN if absent) and its flags. */
static long fdinfo_field(int fd, const char *key, int base)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    long v = LONG_MIN;
    if (!f)
        return v;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, base);
    fclose(f);
    return v;
}

static int exit_status_of(int pfd)
{
    struct pidfd_info_v0 info;
    memset(&info, 0, sizeof info);
    info.mask = PIDFD_INFO_EXIT_BIT;
    if (ioctl(pfd, PIDFD_GET_INFO_IOCTL, &info) != 0 || !(info.mask & PIDFD_INFO_EXIT_BIT))
        return -1;
    return info.exit_code;
}

static int readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 0);
    return r == 1 && (p.revents & POLLIN);
}

static pid_t fork_waiter(void)
{
    pid_t me = getpid();
    pid_t c = fork();
    if (c < 0)
        wl_die("fork");
    if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != me)
            _exit(1);
        for (;;)
            pause();
    }
    return c;
}

static int check_fd(int fd, const char *name, long want_pid, int want_flags, char *msg, size_t len)
{
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = '\0';
    if (strcmp(link, "anon_inode:[pidfd]") != 0) {
        snprintf(msg, len, "fd %s (%d) is %s, not a pidfd", name, fd, link);
        return 0;
    }
    long pid = fdinfo_field(fd, "Pid", 10);
    if (pid != want_pid) {
        snprintf(msg, len, "fd %s (%d): fdinfo Pid %ld, expected %ld", name, fd, pid, want_pid);
        return 0;
    }
    long flags = fdinfo_field(fd, "flags", 8);
    if ((flags & (O_NONBLOCK | PIDFD_THREAD_FLAG)) != want_flags) {
        snprintf(msg, len, "fd %s (%d): flags 0%lo, expected O_NONBLOCK|PIDFD_THREAD bits 0%o", name, fd, flags,
                 want_flags);
        return 0;
    }
    return 1;
}

static int verify(char *msg, size_t len, int exiting)
{
    if (!check_fd(fd_a, "A", child, O_NONBLOCK, msg, len) || !check_fd(fd_a2, "A2", child, O_NONBLOCK, msg, len) ||
        !check_fd(fd_s, "S", getpid(), self_flags, msg, len) || !check_fd(fd_d, "D", -1, 0, msg, len))
        return 0;
    /* A and A2: one description. */
    int fl = fcntl(fd_a, F_GETFL);
    if (fcntl(fd_a, F_SETFL, fl & ~O_NONBLOCK) != 0 || (fcntl(fd_a2, F_GETFL) & O_NONBLOCK) ||
        fcntl(fd_a, F_SETFL, fl) != 0) {
        snprintf(msg, len, "fds A and A2 do not share their description");
        return 0;
    }
    if (readable(fd_a)) {
        snprintf(msg, len, "pidfd A of the live child %d polls readable", (int)child);
        return 0;
    }
    if (!readable(fd_d)) {
        snprintf(msg, len, "pidfd D of a reaped process does not poll readable");
        return 0;
    }
    if (send_signal(fd_a, 0) != 0) {
        snprintf(msg, len, "pidfd_send_signal(A, 0): errno %d", errno);
        return 0;
    }
    if (send_signal(fd_d, 0) == 0 || errno != ESRCH) {
        snprintf(msg, len, "pidfd_send_signal(D, 0) did not fail with ESRCH (errno %d)", errno);
        return 0;
    }
    siginfo_t si;
    if (waitid(P_PIDFD, (id_t)fd_d, &si, WEXITED | WNOHANG) == 0 || errno != ECHILD) {
        snprintf(msg, len, "waitid on pidfd D did not fail with ECHILD (errno %d)", errno);
        return 0;
    }
    if (exit_status_of(fd_d) != dead_status) {
        snprintf(msg, len, "PIDFD_GET_INFO exit status of D: 0x%x, expected 0x%x", exit_status_of(fd_d), dead_status);
        return 0;
    }
    if (exiting) {
        if (send_signal(fd_a, SIGTERM) != 0) {
            snprintf(msg, len, "pidfd_send_signal(A, SIGTERM): errno %d", errno);
            return 0;
        }
        memset(&si, 0, sizeof si);
        /* waitid on an O_NONBLOCK pidfd does not wait (EAGAIN, Linux 5.10+). */
        if (fcntl(fd_a, F_SETFL, fl & ~O_NONBLOCK) != 0 || waitid(P_PIDFD, (id_t)fd_a, &si, WEXITED) != 0) {
            snprintf(msg, len, "waitid on pidfd A: errno %d", errno);
            return 0;
        }
        if (si.si_pid != child || si.si_code != CLD_KILLED || si.si_status != SIGTERM) {
            snprintf(msg, len, "waitid on pidfd A: pid %d code %d status %d, expected %d killed by SIGTERM",
                     (int)si.si_pid, si.si_code, si.si_status, (int)child);
            return 0;
        }
        if (!readable(fd_a)) {
            snprintf(msg, len, "pidfd A does not poll readable after its child was reaped");
            return 0;
        }
    }
    snprintf(msg, len, "child %d, self %d, reaped exit 0x%x", (int)child, (int)getpid(), dead_status);
    return 1;
}

/* Ready, then answers verify requests with `check` (NULL: always OK). */
static __attribute__((noreturn)) void serve(const char *ctl, int (*check)(char *, size_t, int))
{
    wl_ready(ctl);
    for (;;) {
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE) {
            wl_sleep_ms(10);
            continue;
        }
        char msg[512], line[600];
        int ok = check ? check(msg, sizeof msg, req == WL_VERIFY_EXIT) : (snprintf(msg, sizeof msg, "holding"), 1);
        snprintf(line, sizeof line, "%s %s\n", ok ? "OK" : "FAIL", msg);
        wl_write_file_atomic(ctl, "result", line);
        if (req == WL_VERIFY_EXIT)
            exit(ok ? 0 : 1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pidfds CTL_DIR [outside|shared]\n");
        return 2;
    }
    const char *mode = argc > 2 ? argv[2] : "";
    if (strcmp(mode, "outside") == 0) {
        fd_a = pidfd_open_(getppid(), 0);
        if (fd_a < 0)
            wl_die("pidfd_open of the parent");
        serve(argv[1], NULL);
    }
    if (strcmp(mode, "shared") == 0) {
        fd_a = pidfd_open_(getpid(), 0);
        if (fd_a < 0)
            wl_die("pidfd_open of self");
        child = fork_waiter();
        serve(argv[1], NULL);
    }
    child = fork_waiter();
    fd_a = pidfd_open_(child, O_NONBLOCK);
    if (fd_a < 0)
        wl_die("pidfd_open of the child");
    fd_a2 = dup(fd_a);
    self_flags = PIDFD_THREAD_FLAG;
    fd_s = pidfd_open_(getpid(), self_flags);
    if (fd_s < 0 && errno == EINVAL) {
        self_flags = 0;  /* before Linux 6.9 */
        fd_s = pidfd_open_(getpid(), 0);
    }
    if (fd_s < 0)
        wl_die("pidfd_open of self");
    pid_t d = fork();
    if (d == 0)
        _exit(7);
    fd_d = pidfd_open_(d, 0);
    if (fd_d < 0)
        wl_die("pidfd_open of the short-lived child");
    if (waitpid(d, NULL, 0) != d)
        wl_die("waitpid");
    dead_status = exit_status_of(fd_d);
    serve(argv[1], verify);
}
