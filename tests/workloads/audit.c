/* One kind of process state per mode, for tests/e2e/test_audit.py: state
 * cryo does not restore (the dump must refuse it by name and leave the
 * process untouched), or state it does (the dump must go through and the
 * restored process still have it).
 *
 * Usage: audit CTL_DIR MODE
 *
 * The workload sets up MODE's state, writes <ctl>/ready and then, on each
 * verify request, checks that the state is still there, exactly:
 *   stopped          raises SIGSTOP after ready (the test continues it)
 *   flock posix ofd  holds a lock on <ctl>/lockfile (flock, fcntl F_SETLK, F_OFD_SETLK)
 *   lease            holds a read lease on <ctl>/lockfile
 *   flock_mapped     holds a flock through a description only a mapping keeps open
 *   setown setsig async   a pipe's F_SETOWN owner, F_SETSIG signal, O_ASYNC flag
 *   clone_files clone_fs  a child sharing the fd table / fs (CLONE_FILES, CLONE_FS)
 *   thread_files     a thread with an fd table of its own (unshare CLONE_FILES)
 *   thread_nice      a thread with a nice value other than the leader's
 *   seccomp_thread   a thread in seccomp strict mode (blocked in read)
 *   mlock lockonfault madv_random madv_sequential droppable mseal guard
 *                    a mapping with that VMA flag
 *   seccomp          an allow-all seccomp filter
 *   netns timens_children   unshare(CLONE_NEWNET), unshare(CLONE_NEWTIME)
 *                    (restored into fresh ones: the check is that they are
 *                    not the host's)
 *   oom loginuid thp affinity membarrier mdwe numa ioprio autogroup ksm
 *   mce sem_undo     the per-process attribute of that name
 *   plain            nothing (the test moves it into another cgroup)
 *   coredump         /proc/self/coredump_filter 0x7b
 *   noreserve        a MAP_NORESERVE mapping holding a pattern
 * (which of them cryo restores: RESTORED in test_audit.py)
 */
#define _GNU_SOURCE
#include <linux/kcmp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/wait.h>

#include "wl_common.h"

#define REGION (4 * 4096)
#define SEED 0xa0d17u

static const char *mode;
static const char *ctl;
static char *region;
static int fds[2] = {-1, -1};
static int lock_fd = -1;
static pid_t child;
static pid_t thread_tid;
static char host_ns[128];  /* netns, timens_children: the namespace it left */
static int sem_id = -1;
static int thread_pipe[2];

/* MODE may name several modes joined by '+' (their states must not overlap). */
static int is(const char *m)
{
    size_t n = strlen(m);
    for (const char *p = mode; p; p = strchr(p, '+') ? strchr(p, '+') + 1 : NULL)
        if (strncmp(p, m, n) == 0 && (p[n] == '\0' || p[n] == '+'))
            return 1;
    return 0;
}

static const char *const kModes[] = {
    "stopped", "flock", "posix", "ofd", "lease", "flock_mapped", "setown", "setsig", "async", "clone_files",
    "clone_fs", "thread_files", "thread_nice", "seccomp_thread", "mlock", "lockonfault", "madv_random",
    "madv_sequential", "droppable", "mseal", "guard", "seccomp", "netns", "timens_children", "oom", "loginuid",
    "thp", "affinity", "membarrier", "mdwe", "numa", "ioprio", "autogroup", "ksm", "mce",
    "sem_undo", "plain", "coredump", "noreserve"};

static void check_modes(void)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", mode);
    for (char *save = NULL, *m = strtok_r(copy, "+", &save); m; m = strtok_r(NULL, "+", &save)) {
        size_t i = 0;
        while (i < sizeof kModes / sizeof kModes[0] && strcmp(kModes[i], m) != 0)
            i++;
        if (i == sizeof kModes / sizeof kModes[0])
            wl_die("unknown mode %s", m);
    }
}

static void lockfile_path(char *out, size_t n) { wl_path(out, n, ctl, "lockfile"); }

static int open_lockfile(int flags)
{
    char path[WL_PATH_MAX];
    lockfile_path(path, sizeof path);
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0)
        wl_die("open %s", path);
    return fd;
}

/* The VmFlags of the VMA holding `addr`, from /proc/self/smaps. */
static void vmflags_of(const void *addr, char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        wl_die("fopen smaps");
    char line[512];
    int inside = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') > strchr(line, ' ')) {
            inside = (unsigned long)addr >= lo && (unsigned long)addr < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, n, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static int has_flag(const void *addr, const char *flag)
{
    char flags[256], want[8];
    vmflags_of(addr, flags, sizeof flags);
    snprintf(want, sizeof want, " %s ", flag);
    return strstr(flags, want) != NULL;
}

static void read_small(const char *path, char *out, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        wl_die("open %s", path);
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    out[r > 0 ? r : 0] = '\0';
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
}

static void write_small(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        wl_die("write %s to %s", text, path);
    close(fd);
}

static char *map_region(int flags)
{
    char *p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap");
    return p;
}

static void *thread_main(void *arg)
{
    (void)arg;
    const pid_t tid = (pid_t)syscall(SYS_gettid);
    if (is("thread_files") && unshare(CLONE_FILES) != 0)
        wl_die("unshare(CLONE_FILES) in a thread");
    if (is("thread_nice") && setpriority(PRIO_PROCESS, (id_t)tid, 5) != 0)
        wl_die("setpriority of a thread");
    __atomic_store_n(&thread_tid, tid, __ATOMIC_SEQ_CST);
    if (is("seccomp_thread")) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
            wl_die("PR_SET_SECCOMP strict");
        char c;
        for (;;)
            if (read(thread_pipe[0], &c, 1) < 0)
                syscall(SYS_exit, 1);
    }
    for (;;)
        pause();
    return NULL;
}

static int child_main(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static void setup(void)
{
    if (is("flock") || is("posix") || is("ofd") || is("lease") || is("flock_mapped")) {
        lock_fd = open_lockfile(is("lease") ? O_RDONLY | O_CREAT : O_RDWR | O_CREAT);
        if (ftruncate(lock_fd, 4096) != 0 && !is("lease"))
            wl_die("ftruncate");
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if ((is("flock") || is("flock_mapped")) && flock(lock_fd, LOCK_EX) != 0)
            wl_die("flock");
        if (is("posix") && fcntl(lock_fd, F_SETLK, &fl) != 0)
            wl_die("F_SETLK");
        if (is("ofd") && fcntl(lock_fd, F_OFD_SETLK, &fl) != 0)
            wl_die("F_OFD_SETLK");
        if (is("lease") && fcntl(lock_fd, F_SETLEASE, F_RDLCK) != 0)
            wl_die("F_SETLEASE");
        if (is("flock_mapped")) {
            region = mmap(NULL, 4096, PROT_READ, MAP_SHARED, lock_fd, 0);
            if (region == MAP_FAILED)
                wl_die("mmap lockfile");
            close(lock_fd);  /* the mapping keeps the description, and its flock, alive */
            lock_fd = -1;
        }
    }
    if (is("setown") || is("setsig") || is("async")) {
        if (pipe2(fds, O_CLOEXEC) != 0)
            wl_die("pipe2");
        if (is("setown") && fcntl(fds[0], F_SETOWN, wl_getpid()) != 0)
            wl_die("F_SETOWN");
        if (is("setsig") && fcntl(fds[0], F_SETSIG, SIGRTMIN + 1) != 0)
            wl_die("F_SETSIG");
        if (is("async") && fcntl(fds[0], F_SETFL, O_ASYNC) != 0)
            wl_die("F_SETFL O_ASYNC");
    }
    if (is("clone_files") || is("clone_fs")) {
        static char stack[64 * 1024];
        child = clone(child_main, stack + sizeof stack, (is("clone_files") ? CLONE_FILES : CLONE_FS) | SIGCHLD, NULL);
        if (child < 0)
            wl_die("clone");
    }
    if (is("thread_files") || is("thread_nice") || is("seccomp_thread")) {
        if (pipe2(thread_pipe, O_CLOEXEC) != 0)
            wl_die("pipe2");
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0)
            wl_die("pthread_create");
        while (!__atomic_load_n(&thread_tid, __ATOMIC_SEQ_CST))
            wl_sleep_ms(1);
        wl_sleep_ms(50);  /* let it enter seccomp and block */
    }
    if (is("mlock") || is("lockonfault") || is("madv_random") || is("madv_sequential") || is("guard") ||
        is("mseal")) {
        region = map_region(0);
        memset(region, 1, REGION);
        if (is("mlock") && mlock(region, REGION) != 0)
            wl_die("mlock");
        if (is("lockonfault") && syscall(SYS_mlock2, region, REGION, 1 /*MLOCK_ONFAULT*/) != 0)
            wl_die("mlock2");
        if (is("madv_random") && madvise(region, REGION, MADV_RANDOM) != 0)
            wl_die("MADV_RANDOM");
        if (is("madv_sequential") && madvise(region, REGION, MADV_SEQUENTIAL) != 0)
            wl_die("MADV_SEQUENTIAL");
        if (is("guard") && madvise(region + 4096, 4096, 102 /*MADV_GUARD_INSTALL*/) != 0)
            wl_die("MADV_GUARD_INSTALL");
        if (is("mseal") && syscall(462 /*mseal*/, region, REGION, 0) != 0)
            wl_die("mseal");
    }
    if (is("droppable") || is("noreserve")) {
        region = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
                      is("droppable") ? 0x08 /*MAP_DROPPABLE*/ | MAP_ANONYMOUS : MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
        if (region == MAP_FAILED)
            wl_die("mmap %s", mode);
        wl_fill(region, REGION, SEED);
    }
    if (is("seccomp")) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {.len = 1, .filter = &allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            wl_die("seccomp filter");
    }
    if ((is("netns") || is("timens_children")) &&
        readlink(is("netns") ? "/proc/self/ns/net" : "/proc/self/ns/time_for_children", host_ns, sizeof host_ns - 1) < 0)
        wl_die("readlink ns");
    if (is("netns") || is("timens_children")) {
        if (unshare(is("netns") ? CLONE_NEWNET : CLONE_NEWTIME) != 0)
            wl_die("unshare %s", mode);
    }
    if (is("oom")) {
        write_small("/proc/self/oom_score_adj", "500");
    }
    if (is("loginuid")) {
        write_small("/proc/self/loginuid", "1000");
    }
    if (is("coredump")) {
        write_small("/proc/self/coredump_filter", "0x7b");
    }
    if (is("autogroup")) {
        write_small("/proc/self/autogroup", "5");
    }
    if (is("thp")) {
        if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
            wl_die("PR_SET_THP_DISABLE");
    }
    if (is("affinity")) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            wl_die("sched_setaffinity");
    }
    if (is("membarrier")) {
        if (syscall(SYS_membarrier, 1 << 4 /*REGISTER_PRIVATE_EXPEDITED*/, 0, 0) != 0)
            wl_die("membarrier register");
    }
    if (is("mdwe")) {
        if (prctl(65 /*PR_SET_MDWE*/, 1, 0, 0, 0) != 0)
            wl_die("PR_SET_MDWE");
    }
    if (is("numa")) {
        unsigned long node0 = 1;
        if (syscall(SYS_set_mempolicy, 2 /*MPOL_BIND*/, &node0, 64) != 0)
            wl_die("set_mempolicy");
    }
    if (is("ioprio")) {
        if (syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 7) != 0)
            wl_die("ioprio_set");
    }
    if (is("ksm")) {
        if (prctl(67 /*PR_SET_MEMORY_MERGE*/, 1, 0, 0, 0) != 0)
            wl_die("PR_SET_MEMORY_MERGE");
    }
    if (is("mce")) {
        if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) != 0)
            wl_die("PR_MCE_KILL");
    }
    if (is("sem_undo")) {
        sem_id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
        struct sembuf up = {.sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO};
        if (sem_id < 0 || semop(sem_id, &up, 1) != 0)
            wl_die("semget/semop");
        char text[32];
        snprintf(text, sizeof text, "%d\n", sem_id);
        wl_write_file_atomic(ctl, "semid", text);
    }
}

static void verify(struct wl_checks *c)
{
    if (is("flock") || is("flock_mapped")) {
        int other = open_lockfile(O_RDWR);
        wl_check(c, flock(other, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK, "flock no longer held");
        close(other);
    }
    if (is("posix")) {
        /* Not through another fd: closing any fd of the file would drop the
         * process's POSIX locks on it (fcntl(2)). */
        char want[64], line[256];
        snprintf(want, sizeof want, "POSIX  ADVISORY  WRITE %d ", (int)wl_getpid());
        int held = 0;
        FILE *f = fopen("/proc/locks", "re");
        while (f && fgets(line, sizeof line, f))
            held |= strstr(line, want) != NULL;
        if (f)
            fclose(f);
        wl_check(c, held, "POSIX lock no longer in /proc/locks");
    }
    if (is("ofd")) {
        int other = open_lockfile(O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        wl_check(c, fcntl(other, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK, "%s lock no longer held", mode);
        close(other);
    }
    if (is("lease")) {
        wl_check(c, fcntl(lock_fd, F_GETLEASE) == F_RDLCK, "lease: expected F_RDLCK actual %d",
                 fcntl(lock_fd, F_GETLEASE));
    }
    if (is("setown")) {
        wl_check(c, fcntl(fds[0], F_GETOWN) == wl_getpid(), "F_GETOWN %d", fcntl(fds[0], F_GETOWN));
    }
    if (is("setsig")) {
        wl_check(c, fcntl(fds[0], F_GETSIG) == SIGRTMIN + 1, "F_GETSIG %d", fcntl(fds[0], F_GETSIG));
    }
    if (is("async")) {
        wl_check(c, (fcntl(fds[0], F_GETFL) & O_ASYNC) != 0, "O_ASYNC lost");
    }
    if (is("clone_files") || is("clone_fs")) {
        wl_check(c, syscall(SYS_kcmp, wl_getpid(), child, is("clone_files") ? KCMP_FILES : KCMP_FS, 0, 0) == 0,
                 "the child no longer shares the %s", is("clone_files") ? "fd table" : "fs");
    }
    if (is("thread_files")) {
        wl_check(c, syscall(SYS_kcmp, wl_getpid(), thread_tid, KCMP_FILES, 0, 0) != 0, "the thread shares its fd table");
    }
    if (is("thread_nice")) {
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, (id_t)thread_tid);
        wl_check(c, nice == 5, "thread nice expected 5 actual %d", nice);
    }
    if (is("seccomp_thread")) {
        char path[64], text[256] = "";
        snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)thread_tid);
        FILE *f = fopen(path, "re");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "Seccomp:", 8) == 0)
                snprintf(text, sizeof text, "%s", line + 8);
        if (f)
            fclose(f);
        wl_check(c, atoi(text) == 1, "thread seccomp mode %s", text);
    }
    if (is("mlock") || is("lockonfault") || is("madv_random") || is("madv_sequential") || is("droppable") ||
               is("mseal") || is("guard") || is("noreserve")) {
        const char *flag = is("mlock") ? "lo" : is("lockonfault") ? "lf" : is("madv_random") ? "rr"
                           : is("madv_sequential") ? "sr" : is("droppable") ? "dp" : is("mseal") ? "sl"
                           : is("guard") ? "gu" : "nr";
        char flags[256];
        vmflags_of(region, flags, sizeof flags);
        wl_check(c, has_flag(region, flag), "VmFlags %s lost: %s", flag, flags);
        if (is("noreserve"))
            wl_check_pattern(c, "noreserve data", region, REGION, SEED);
    }
    if (is("seccomp")) {
        wl_check(c, prctl(PR_GET_SECCOMP) == SECCOMP_MODE_FILTER, "seccomp mode %d", prctl(PR_GET_SECCOMP));
    }
    if (is("netns") || is("timens_children")) {
        char now[128] = "";
        if (readlink(is("netns") ? "/proc/self/ns/net" : "/proc/self/ns/time_for_children", now, sizeof now - 1) < 0)
            wl_die("readlink ns");
        /* Restored into fresh ones: not the host's. */
        wl_check(c, strcmp(now, host_ns) != 0, "back in the host's %s namespace %s", is("netns") ? "network" : "time",
                 now);
    }
    if (is("oom") || is("loginuid") || is("coredump") || is("autogroup")) {
        const char *path = is("oom") ? "/proc/self/oom_score_adj" : is("loginuid") ? "/proc/self/loginuid"
                           : is("coredump") ? "/proc/self/coredump_filter" : "/proc/self/autogroup";
        const char *want = is("oom") ? "500" : is("loginuid") ? "1000" : is("coredump") ? "0000007b" : "nice 5";
        char text[128];
        read_small(path, text, sizeof text);
        wl_check(c, strstr(text, want) != NULL, "%s: expected %s actual %s", path, want, text);
    }
    if (is("thp")) {
        wl_check(c, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP no longer disabled");
    }
    if (is("affinity")) {
        cpu_set_t set;
        wl_check(c, sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1 && CPU_ISSET(0, &set),
                 "affinity is no longer CPU 0 alone");
    }
    if (is("membarrier")) {
        wl_check(c, syscall(SYS_membarrier, 1 << 3 /*PRIVATE_EXPEDITED*/, 0, 0) == 0,
                 "membarrier PRIVATE_EXPEDITED failed (not registered any more)");
    }
    if (is("mdwe")) {
        wl_check(c, prctl(66 /*PR_GET_MDWE*/, 0, 0, 0, 0) == 1, "MDWE %d", prctl(66, 0, 0, 0, 0));
    }
    if (is("numa")) {
        int policy = -1;
        wl_check(c, syscall(SYS_get_mempolicy, &policy, NULL, 0, NULL, 0) == 0 && policy == 2, "mempolicy %d", policy);
    }
    if (is("ioprio")) {
        long p = syscall(SYS_ioprio_get, 1, 0);
        wl_check(c, p == ((2 << 13) | 7), "ioprio %#lx", p);
    }
    if (is("ksm")) {
        wl_check(c, prctl(68 /*PR_GET_MEMORY_MERGE*/, 0, 0, 0, 0) == 1, "KSM merge-any lost");
    }
    if (is("mce")) {
        wl_check(c, prctl(PR_MCE_KILL_GET, 0, 0, 0, 0) == PR_MCE_KILL_EARLY, "MCE kill policy %d",
                 prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));
    }
    if (is("sem_undo")) {
        wl_check(c, semctl(sem_id, 0, GETVAL) == 1, "semaphore value %d", semctl(sem_id, 0, GETVAL));
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        wl_die("usage: audit CTL_DIR MODE");
    ctl = argv[1];
    mode = argv[2];
    check_modes();
    setup();
    wl_ready(ctl);
    if (is("stopped"))
        raise(SIGSTOP);
    for (;;) {
        int req = wl_poll_verify(ctl);
        if (req != WL_VERIFY_NONE) {
            struct wl_checks c;
            wl_checks_init(&c);
            verify(&c);
            int ok = wl_report(ctl, &c, mode);
            if (req == WL_VERIFY_EXIT) {
                if (sem_id >= 0)
                    semctl(sem_id, 0, IPC_RMID);
                if (child > 0) {
                    kill(child, SIGKILL);
                    waitpid(child, NULL, 0);
                }
                return ok ? 0 : 1;
            }
        }
        wl_sleep_ms(10);
    }
}
