/* memattrs: memory attributes a restore must keep, each checked by the
 * process itself (VmFlags of its own mappings in /proc/self/smaps, prctl,
 * membarrier, mincore).
 *
 * Usage: memattrs CTL_DIR MODE
 *
 * MODE (or "all", every one of them):
 *   mlock       L: 8 pages mlock'ed ("lo"); LF: 8 pages mlock2(MLOCK_ONFAULT)
 *               with pages 0-1 touched ("lo lf", only those resident); LR: 4
 *               read-only pages mlock'ed; LN: 2 PROT_NONE pages mlock'ed
 *               (locked, though mlock fails to fault them in: ENOMEM); VmLck
 *               is exactly their 88 KiB
 *   mlock-limit mlock, then RLIMIT_MEMLOCK lowered to 16 KiB and CAP_IPC_LOCK
 *               dropped: the 88 KiB stay locked (the limit is checked only
 *               when memory is locked), one more page cannot be
 *   mlockall    the parent: mlockall(MCL_FUTURE | MCL_ONFAULT); the child:
 *               mlockall(MCL_CURRENT | MCL_FUTURE). A page mapped at verify
 *               time is "lo lf" in the parent, "lo" in the child; the child's
 *               own memory stays locked
 *   madvise     S: MADV_SEQUENTIAL ("sr"), R: MADV_RANDOM ("rr")
 *   noreserve   N: MAP_NORESERVE private ("nr", not "ac"), NS: MAP_NORESERVE
 *               shared anonymous ("nr")
 *   droppable   D: MAP_DROPPABLE ("dp", with "wf dd nr"), 2 pages written
 *   mseal       M: 4 pages sealed with mseal(2) ("sl"): munmap and mprotect
 *               of it fail with EPERM
 *   thp         the parent: PR_SET_THP_DISABLE 1; the child (which inherits
 *               it): PR_SET_THP_DISABLE with PR_THP_DISABLE_EXCEPT_ADVISED
 *               (PR_GET_THP_DISABLE 3)
 *   membarrier  the parent registers PRIVATE_EXPEDITED and
 *               PRIVATE_EXPEDITED_SYNC_CORE, which the child inherits; the
 *               child registers PRIVATE_EXPEDITED_RSEQ and GLOBAL_EXPEDITED
 *               too: MEMBARRIER_CMD_GET_REGISTRATIONS shows exactly those,
 *               each expedited barrier works where registered, EPERM elsewhere
 * Every written page holds a pattern checked byte for byte.
 *
 * A child is always forked last; the parent asks it to check itself through
 * a shared page and reports both. On verify "exit" the parent kills the child
 * and exits.
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096UL
#define MAP_DROPPABLE_ 0x08
#define SYS_MSEAL 462
#define THP_EXCEPT_ADVISED (1UL << 1)

static const char *mode;
static int want(const char *m)
{
    return strcmp(mode, "all") == 0 || strcmp(mode, m) == 0 ||
           (strcmp(m, "mlock") == 0 && strcmp(mode, "mlock-limit") == 0);
}

#define CAP_IPC_LOCK_ 14
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};

/* Drops CAP_IPC_LOCK from this process (effective and permitted). */
static void drop_ipc_lock(void)
{
    struct cap_header h = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct cap_data d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        wl_die("capget");
    d[0].effective &= ~(1u << CAP_IPC_LOCK_);
    d[0].permitted &= ~(1u << CAP_IPC_LOCK_);
    if (syscall(SYS_capset, &h, d) != 0)
        wl_die("capset");
}

static int has_ipc_lock(void)
{
    struct cap_header h = {0x20080522, 0};
    struct cap_data d[2];
    return syscall(SYS_capget, &h, d) == 0 && (d[0].effective & (1u << CAP_IPC_LOCK_));
}

static char *L, *LF, *LR, *LN, *S, *R, *N, *NS, *D, *M;

struct board {
    volatile uint64_t gen, done;
    volatile int ok;
    char what[1024];
};
static struct board *board;

static char *map(size_t pages, int prot, int flags)
{
    char *p = mmap(NULL, pages * PAGE, prot, flags | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap %zu pages (flags %#x)", pages, flags);
    return p;
}

static void fill(char *p, size_t pages, uint64_t seed)
{
    for (size_t i = 0; i < pages; i++)
        wl_fill(p + i * PAGE, PAGE, seed * 1000 + i);
}

static void check_fill(struct wl_checks *c, const char *what, const char *p, size_t pages, uint64_t seed)
{
    char name[96];
    for (size_t i = 0; i < pages; i++) {
        snprintf(name, sizeof name, "%s page %zu", what, i);
        wl_check_pattern(c, name, p + i * PAGE, PAGE, seed * 1000 + i);
    }
}

/* The VmFlags of the VMA holding addr, " rd wr ... " (spaces around each). */
static int vmflags(const void *addr, char *out, size_t n)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (unsigned long)addr >= lo && (unsigned long)addr < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            line[strcspn(line, "\n")] = ' ';
            size_t len = strnlen(line + 8, n - 1);
            memcpy(out, line + 8, len);
            out[len] = '\0';
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Every flag of `has` is there, none of `lacks`. */
static void check_flags(struct wl_checks *c, const char *what, const void *addr, const char *has, const char *lacks)
{
    char flags[256];
    if (!wl_check(c, vmflags(addr, flags, sizeof flags) == 0, "%s: no VMA at %p", what, addr))
        return;
    char list[64], *save = NULL;
    for (int k = 0; k < 2; k++) {
        snprintf(list, sizeof list, "%s", k ? lacks : has);
        for (char *t = strtok_r(list, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
            char pat[8];
            snprintf(pat, sizeof pat, " %s ", t);
            wl_check(c, (strstr(flags, pat) != NULL) == !k, "%s: VmFlags%s %s \"%s\"", what, flags,
                     k ? "has" : "lacks", t);
        }
    }
}

static void check_resident(struct wl_checks *c, const char *what, void *p, size_t pages, unsigned want_mask)
{
    unsigned char vec[64];
    if (!wl_check(c, pages <= 64 && mincore(p, pages * PAGE, vec) == 0, "%s: mincore: %s", what, strerror(errno)))
        return;
    for (size_t i = 0; i < pages; i++)
        wl_check(c, (vec[i] & 1) == ((want_mask >> i) & 1), "%s page %zu: resident %d, expected %u", what, i,
                 vec[i] & 1, (want_mask >> i) & 1);
}

static long vm_lck_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* A page mapped now takes the mm's mlockall(MCL_FUTURE) flags. */
static void check_future(struct wl_checks *c, const char *who, const char *has, const char *lacks)
{
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!wl_check(c, p != MAP_FAILED, "%s: mmap of a probe page: %s", who, strerror(errno)))
        return;
    char what[64];
    snprintf(what, sizeof what, "%s: a page mapped after mlockall(MCL_FUTURE)", who);
    check_flags(c, what, p, has, lacks);
    munmap(p, PAGE);
}

/* registered_mask: bit 0 PRIVATE_EXPEDITED, 1 SYNC_CORE, 2 RSEQ; global: GLOBAL_EXPEDITED too. */
static void check_barriers(struct wl_checks *c, const char *who, int registered_mask, int global)
{
    long want = (global ? MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED : 0) |
                ((registered_mask & 1) ? MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED : 0) |
                ((registered_mask & 2) ? MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE : 0) |
                ((registered_mask & 4) ? MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ : 0);
    long got = syscall(SYS_membarrier, 1 << 9 /* MEMBARRIER_CMD_GET_REGISTRATIONS */, 0, 0);
    wl_check(c, got == want, "%s: membarrier registrations %#lx, expected %#lx", who, got, want);
    static const struct {
        int cmd;
        const char *name;
    } cmds[] = {{MEMBARRIER_CMD_PRIVATE_EXPEDITED, "PRIVATE_EXPEDITED"},
                {MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, "PRIVATE_EXPEDITED_SYNC_CORE"},
                {MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, "PRIVATE_EXPEDITED_RSEQ"}};
    for (int i = 0; i < 3; i++) {
        errno = 0;
        long r = syscall(SYS_membarrier, cmds[i].cmd, 0, 0);
        int reg = (registered_mask >> i) & 1;
        wl_check(c, reg ? r == 0 : (r == -1 && errno == EPERM), "%s: membarrier %s returned %ld (errno %d), %s",
                 who, cmds[i].name, r, errno, reg ? "registered" : "not registered");
    }
}

static void register_barriers(int mask)
{
    static const int regs[] = {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ};
    for (int i = 0; i < 3; i++)
        if (((mask >> i) & 1) && syscall(SYS_membarrier, regs[i], 0, 0) != 0)
            wl_die("membarrier registration %d", regs[i]);
}

static char *child_own; /* the child's own locked page (mlockall MCL_CURRENT) */

static void check_child(struct wl_checks *c)
{
    if (want("mlockall")) {
        check_flags(c, "child: its own page", child_own, "lo", "lf");
        check_fill(c, "child: its own page", child_own, 1, 77);
        check_future(c, "child", "lo", "lf");
    }
    if (want("thp"))
        wl_check(c, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == (int)(1 | THP_EXCEPT_ADVISED),
                 "child: PR_GET_THP_DISABLE %d, expected %lu", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0),
                 1 | THP_EXCEPT_ADVISED);
    if (want("membarrier"))
        check_barriers(c, "child", 7, 1);
}

static void child_loop(pid_t parent)
{
    uint64_t seen = board->gen;
    for (;;) {
        if (getppid() != parent)
            _exit(0);
        uint64_t g = board->gen;
        if (g == seen) {
            wl_sleep_ms(2);
            continue;
        }
        seen = g;
        struct wl_checks c;
        wl_checks_init(&c);
        check_child(&c);
        size_t n = strnlen(c.msg, sizeof board->what - 1);
        memcpy(board->what, c.msg, n);
        board->what[n] = '\0';
        board->ok = c.failed == 0;
        __sync_synchronize();
        board->done = g;
    }
}

static void check_parent(struct wl_checks *c)
{
    if (want("mlock")) {
        check_flags(c, "L", L, "lo", "lf");
        check_fill(c, "L", L, 8, 1);
        check_resident(c, "L", L, 8, 0xff);
        check_flags(c, "LF", LF, "lo lf", "");
        check_resident(c, "LF", LF, 8, 0x3);
        check_fill(c, "LF", LF, 2, 2);
        check_flags(c, "LR", LR, "lo", "lf wr");
        check_resident(c, "LR", LR, 4, 0xf);
        check_fill(c, "LR", LR, 4, 3);
        check_flags(c, "LN", LN, "lo", "rd wr");
        if (!want("mlockall"))
            wl_check(c, vm_lck_kb() == 88, "VmLck %ld kB, expected 88", vm_lck_kb());
    }
    if (strcmp(mode, "mlock-limit") == 0) {
        struct rlimit rl;
        wl_check(c, getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur == 16384 && rl.rlim_max == 16384,
                 "RLIMIT_MEMLOCK %lu/%lu, expected 16384/16384", (unsigned long)rl.rlim_cur,
                 (unsigned long)rl.rlim_max);
        wl_check(c, !has_ipc_lock(), "CAP_IPC_LOCK is effective again");
        char *p = map(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        errno = 0;
        wl_check(c, mlock(p, PAGE) != 0 && errno == ENOMEM, "mlock of one more page beyond the limit: errno %d",
                 errno);
        munmap(p, PAGE);
    }
    if (want("mlockall"))
        check_future(c, "parent", "lo lf", "");
    if (want("madvise")) {
        check_flags(c, "S", S, "sr", "rr");
        check_fill(c, "S", S, 2, 4);
        check_flags(c, "R", R, "rr", "sr");
        check_fill(c, "R", R, 2, 5);
    }
    if (want("noreserve")) {
        check_flags(c, "N", N, "nr", "ac");
        check_fill(c, "N", N, 1, 6);
        check_flags(c, "NS", NS, "nr sh", "");
        check_fill(c, "NS", NS, 1, 7);
    }
    if (want("droppable")) {
        check_flags(c, "D", D, "dp wf dd nr", "");
        check_fill(c, "D", D, 2, 8);
    }
    if (want("mseal")) {
        check_flags(c, "M", M, "sl", "");
        check_fill(c, "M", M, 4, 9);
        errno = 0;
        wl_check(c, mprotect(M, PAGE, PROT_READ) != 0 && errno == EPERM, "M: mprotect of a sealed page: errno %d",
                 errno);
        errno = 0;
        wl_check(c, munmap(M, PAGE) != 0 && errno == EPERM, "M: munmap of a sealed page: errno %d", errno);
    }
    if (want("thp"))
        wl_check(c, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "parent: PR_GET_THP_DISABLE %d, expected 1",
                 prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
    if (want("membarrier"))
        check_barriers(c, "parent", 3, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: %s CTL_DIR MODE", argv[0]);
    const char *ctl = argv[1];
    mode = argv[2];
    const pid_t parent = getpid();
    board = (struct board *)map(1, PROT_READ | PROT_WRITE, MAP_SHARED);

    if (want("mlock")) {
        L = map(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        fill(L, 8, 1);
        if (mlock(L, 8 * PAGE) != 0)
            wl_die("mlock L");
        LF = map(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        if (mlock2(LF, 8 * PAGE, MLOCK_ONFAULT) != 0)
            wl_die("mlock2 LF");
        fill(LF, 2, 2);
        LR = map(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        fill(LR, 4, 3);
        if (mprotect(LR, 4 * PAGE, PROT_READ) != 0 || mlock(LR, 4 * PAGE) != 0)
            wl_die("mlock LR");
        LN = map(2, PROT_NONE, MAP_PRIVATE);
        if (mlock(LN, 2 * PAGE) != 0 && errno != ENOMEM)
            wl_die("mlock LN");
    }
    if (strcmp(mode, "mlock-limit") == 0) {
        struct rlimit rl = {16384, 16384};
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
            wl_die("setrlimit RLIMIT_MEMLOCK");
        drop_ipc_lock();
    }
    if (want("madvise")) {
        S = map(2, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        fill(S, 2, 4);
        R = map(2, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        fill(R, 2, 5);
        if (madvise(S, 2 * PAGE, MADV_SEQUENTIAL) != 0 || madvise(R, 2 * PAGE, MADV_RANDOM) != 0)
            wl_die("madvise");
    }
    if (want("noreserve")) {
        N = map(16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE);
        fill(N, 1, 6);
        NS = map(16, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
        fill(NS, 1, 7);
    }
    if (want("droppable")) {
        D = map(8, PROT_READ | PROT_WRITE, MAP_DROPPABLE_);
        fill(D, 2, 8);
    }
    if (want("mseal")) {
        M = map(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
        fill(M, 4, 9);
        if (syscall(SYS_MSEAL, M, 4 * PAGE, 0) != 0)
            wl_die("mseal");
    }
    if (want("thp") && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
        wl_die("PR_SET_THP_DISABLE");
    if (want("membarrier"))
        register_barriers(3);
    pid_t child = fork();
    if (child < 0)
        wl_die("fork");
    if (child == 0) {
        if (want("mlockall")) {
            child_own = map(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
            fill(child_own, 1, 77);
            if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
                wl_die("mlockall in the child");
        }
        if (want("thp") && prctl(PR_SET_THP_DISABLE, 1, THP_EXCEPT_ADVISED, 0, 0) != 0)
            wl_die("PR_SET_THP_DISABLE except advised");
        if (want("membarrier")) {
            register_barriers(4);
            if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0)
                wl_die("membarrier REGISTER_GLOBAL_EXPEDITED");
        }
        board->done = (uint64_t)-1;
        child_loop(parent);
    }
    for (int i = 0; board->done != (uint64_t)-1; i++) {
        if (i > 5000)
            wl_die("the child did not get ready");
        wl_sleep_ms(1);
    }
    if (want("mlockall") && mlockall(MCL_FUTURE | MCL_ONFAULT) != 0)
        wl_die("mlockall in the parent");
    char buf[64];
    snprintf(buf, sizeof buf, "child %d\n", (int)child);
    wl_write_file_atomic(ctl, "layout", buf);
    wl_ready(ctl);

    for (int verifies = 1;; verifies++) {
        int req;
        while ((req = wl_poll_verify(ctl)) == WL_VERIFY_NONE)
            wl_sleep_ms(10);
        struct wl_checks c;
        wl_checks_init(&c);
        wl_check(&c, wl_getpid() == parent, "pid expected %d actual %d", (int)parent, (int)wl_getpid());
        check_parent(&c);
        uint64_t g = board->gen + 1;
        board->gen = g;
        uint64_t deadline = wl_now_ns() + 5000000000ULL;
        while (board->done != g && wl_now_ns() < deadline)
            wl_sleep_ms(2);
        if (wl_check(&c, board->done == g, "the child did not answer within 5 s"))
            wl_check(&c, board->ok, "child: %s", board->what);
        char summary[128];
        snprintf(summary, sizeof summary, "memattrs %s verifies=%d child=%d", mode, verifies, (int)child);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
