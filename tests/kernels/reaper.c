/* PID 1 of a kernel-matrix VM (`reaper --init SCRIPT...`), or on the host
 * the init of a PID namespace of its own (`unshare --pid --fork
 * --mount-proc reaper SCRIPT...`): runs the matrix script as its child, reaps every process that ends up its
 * child (orphans of killed workloads, detached restored processes), and
 * when the script exits powers the VM off (as PID 1) or exits with the
 * script's status. As PID 1 it first mounts what cryo and the workloads
 * need. Built static: the initramfs holds no libc for it. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

static void mnt(const char *src, const char *dir, const char *type, const char *opts)
{
    mkdir(dir, 0755);
    if (mount(src, dir, type, 0, opts) != 0)
        fprintf(stderr, "reaper: mount %s on %s: errno %d\n", type, dir, errno);
}

static void power_off(int code)
{
    printf("MATRIX-EXIT %d\n", code);
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

int main(int argc, char **argv)
{
    /* Started by the kernel as /init with no arguments: the VM's matrix. */
    static char *vm_argv[] = {"reaper", "/bin/sh", "/matrix.sh", NULL};
    int init = argc > 1 && strcmp(argv[1], "--init") == 0;
    if (init) {
        argv++;
        argc--;
    } else if (getpid() == 1 && argc == 1) {
        init = 1;
        argv = vm_argv;
        argc = 3;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: reaper SCRIPT [ARGS...]\n");
        if (init) power_off(2);
        return 2;
    }
    if (init) {
        mnt("proc", "/proc", "proc", NULL);
        mnt("sysfs", "/sys", "sysfs", NULL);
        mnt("devtmpfs", "/dev", "devtmpfs", NULL);
        mnt("devpts", "/dev/pts", "devpts", "ptmxmode=0666");
        mnt("tmpfs", "/dev/shm", "tmpfs", NULL);
        mnt("tmpfs", "/tmp", "tmpfs", NULL);
        mnt("tmpfs", "/run", "tmpfs", NULL);
        mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", NULL);
        setenv("PATH", "/bin:/sbin", 1);
    } else if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        perror("reaper: PR_SET_CHILD_SUBREAPER");
        return 2;
    }
    pid_t script = fork();
    if (script < 0) {
        perror("reaper: fork");
        if (init) power_off(2);
        return 2;
    }
    if (script == 0) {
        /* Nothing of the caller's but stdio: an inherited pipe would make
         * every workload share a file with a process outside its tree. */
        close_range(3, ~0U, 0);
        setsid(); /* a session of our own (in a new PID namespace, the caller's is invisible) */
        execv(argv[1], argv + 1);
        perror("reaper: exec");
        _exit(127);
    }
    int code = 1;
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, __WALL);
        if (p < 0 && errno == EINTR) continue;
        if (p < 0) break; /* no child left */
        if (p == script) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (init) power_off(code);
            break; /* on the host, what is left is the script's to clean */
        }
    }
    return code;
}
