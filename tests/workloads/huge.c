/* huge: hugetlb memory (MAP_HUGETLB) a restore must put back with its
 * content and its page size, each checked by the process itself (its bytes,
 * KernelPageSize and VmFlags "ht" of its own mappings in /proc/self/smaps).
 *
 * Usage: huge CTL_DIR MODE
 *
 * MODE:
 *   2m      H: 4 private anonymous huge pages of 2 MiB: pages 0 and 2 written
 *           whole, page 3 only its first 4 KiB (the rest reads zero), page 1
 *           never touched (zero); page 3 then made read-only (mprotect splits
 *           the mapping: a part with a file offset). A child forked then
 *           shares them copy-on-write and writes page 0 anew (a huge page of
 *           its own); it checks its own H when the parent verifies.
 *   1g      G: one private anonymous huge page of 1 GiB: its first MiB and
 *           its last 4 KiB written.
 *   shared  shared hugetlb memory of 2 MiB pages, shared with a child forked
 *           after: S, 2 pages of shared anonymous memory (MAP_SHARED |
 *           MAP_HUGETLB; page 0 written whole, page 1 its first 4 KiB);
 *           M, a hugetlb memfd (MFD_HUGETLB) of 1 page, mapped and held
 *           as fd 'mfd' (its first and last 4 KiB written); V, a SysV
 *           SHM_HUGETLB segment of 2 MiB + 4 KiB (2 pages; its first
 *           4 KiB written), attached and marked removed (IPC_RMID), so it
 *           goes with the workload. At each verify the parent writes a
 *           new token into S, M and V, the child checks it sees it in all
 *           three (and M through the fd) and writes a token of its own,
 *           which the parent checks: the sharing is still shared.
 *   shared1g  S alone, one shared page of 1 GiB (its first MiB and last
 *           4 KiB written), shared with a child the same way.
 * (Files of a hugetlbfs mount, private mappings of hugetlb memfds: hugefile.c.)
 * On verify "exit" the parent kills the child and exits.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include "wl_common.h"

#define MIB (1UL << 20)
#define H2 (2 * MIB)
#define G1 (1024 * MIB)
#define MAP_HUGE_2MB_ (21 << 26)
#define MAP_HUGE_1GB_ (30 << 26)
#define MFD_HUGETLB_ 4U
#define SHM_HUGETLB_ 04000
#define HUGETLBFS_MAGIC_ 0x958458f6

/* Where the tokens go: the parent's and the child's, in the last 4 KiB of
 * the first huge page of each object (away from the checked patterns). */
#define TOKEN_PARENT(p, len) ((volatile uint64_t *)((p) + (len) - 64))
#define TOKEN_CHILD(p, len) ((volatile uint64_t *)((p) + (len) - 32))

static const char *mode;
static char *H, *G;
static char *S, *M, *V; /* shared: anonymous, memfd, SysV */
static size_t s_len, s_page; /* S's size and page size */
static int mfd = -1;
static int is_child;

struct board {
    volatile uint64_t gen, done;
    volatile int ok;
    char what[1024];
};
static struct board *board;
static pid_t child;

/* "KernelPageSize" of the VMA holding addr in kB, and whether its VmFlags
 * have "ht"; -1 if not found. */
static long page_kb(const void *addr, int *ht)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    *ht = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in)
                break;
            in = (unsigned long)addr >= lo && (unsigned long)addr < hi;
            continue;
        }
        if (in && strncmp(line, "KernelPageSize:", 15) == 0)
            kb = strtol(line + 15, NULL, 10);
        if (in && strncmp(line, "VmFlags:", 8) == 0)
            *ht = strstr(line, " ht") != NULL;
    }
    fclose(f);
    return kb;
}

static void check_zero(struct wl_checks *c, const char *what, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i += 8)
        if (*(const uint64_t *)(p + i) != 0) {
            wl_check(c, 0, "%s: byte %zu not zero", what, i);
            return;
        }
    wl_check(c, 1, "%s", what);
}

static void check_page_size(struct wl_checks *c, const char *what, const void *p, long want_kb)
{
    int ht;
    long kb = page_kb(p, &ht);
    wl_check(c, kb == want_kb && ht, "%s: KernelPageSize %ld kB (expected %ld), VmFlags ht %s", what, kb, want_kb,
             ht ? "set" : "missing");
}

static void check_h(struct wl_checks *c)
{
    const char *who = is_child ? "child H" : "H";
    char what[64];
    snprintf(what, sizeof what, "%s page 0", who);
    wl_check_pattern(c, what, H, H2, is_child ? 50 : 10);
    snprintf(what, sizeof what, "%s page 1", who);
    check_zero(c, what, H + H2, H2);
    snprintf(what, sizeof what, "%s page 2", who);
    wl_check_pattern(c, what, H + 2 * H2, H2, 12);
    snprintf(what, sizeof what, "%s page 3 head", who);
    wl_check_pattern(c, what, H + 3 * H2, 4096, 13);
    snprintf(what, sizeof what, "%s page 3 tail", who);
    check_zero(c, what, H + 3 * H2 + 4096, H2 - 4096);
    check_page_size(c, who, H, 2048);
    check_page_size(c, who, H + 3 * H2, 2048);
}

/* The first huge page of S, M, V (where the tokens are). */
static size_t token_len(const char *p)
{
    return p == S ? s_page : H2;
}

static void check_shared(struct wl_checks *c, uint64_t token)
{
    const char *who = is_child ? "child" : "parent";
    char what[96];
    if (S) {
        snprintf(what, sizeof what, "%s S head", who);
        wl_check_pattern(c, what, S, s_page == H2 ? H2 - 4096 : MIB, 40);
        if (s_page == H2) {
            snprintf(what, sizeof what, "%s S page 1 head", who);
            wl_check_pattern(c, what, S + H2, 4096, 41);
            snprintf(what, sizeof what, "%s S page 1 rest", who);
            check_zero(c, what, S + H2 + 4096, H2 - 4096);
        } else {
            snprintf(what, sizeof what, "%s S middle", who);
            check_zero(c, what, S + MIB, 64 * MIB);
            snprintf(what, sizeof what, "%s S tail", who);
            wl_check_pattern(c, what, S + s_len - 4096, 4096 - 128, 41);
        }
        snprintf(what, sizeof what, "%s S", who);
        check_page_size(c, what, S, (long)(s_page >> 10));
    }
    if (M) {
        snprintf(what, sizeof what, "%s M head", who);
        wl_check_pattern(c, what, M, 4096, 42);
        snprintf(what, sizeof what, "%s M middle", who);
        check_zero(c, what, M + 4096, H2 - 3 * 4096);
        snprintf(what, sizeof what, "%s M tail", who);
        wl_check_pattern(c, what, M + H2 - 4096, 4096 - 128, 43);
        snprintf(what, sizeof what, "%s M", who);
        check_page_size(c, what, M, 2048);
        /* The fd names the same hugetlb memfd: its size, its file system and
         * what the mapping holds, read through it. */
        struct stat st;
        struct statfs sf;
        char buf[4096];
        wl_check(c, fstat(mfd, &st) == 0 && st.st_size == (off_t)H2, "%s M fd %d: size %lld (expected %lu)", who, mfd,
                 (long long)st.st_size, H2);
        wl_check(c, fstatfs(mfd, &sf) == 0 && (unsigned long)sf.f_type == HUGETLBFS_MAGIC_ && sf.f_bsize == (long)H2,
                 "%s M fd %d: not on hugetlbfs with 2 MiB pages", who, mfd);
        wl_check(c, wl_pread_full(mfd, buf, sizeof buf, 0) == (ssize_t)sizeof buf && memcmp(buf, M, sizeof buf) == 0,
                 "%s M fd %d: pread differs from the mapping", who, mfd);
        uint64_t t = 0;
        if (token)
            wl_check(c, pread(mfd, &t, sizeof t, (off_t)(H2 - 64)) == (ssize_t)sizeof t && t == token,
                     "%s M fd %d: token %#llx read through the fd (expected %#llx)", who, mfd, (unsigned long long)t,
                     (unsigned long long)token);
    }
    if (V) {
        snprintf(what, sizeof what, "%s V head", who);
        wl_check_pattern(c, what, V, 4096, 44);
        snprintf(what, sizeof what, "%s V page 1", who);
        check_zero(c, what, V + H2, 4096);
        snprintf(what, sizeof what, "%s V", who);
        check_page_size(c, what, V, 2048);
    }
    /* The parent's token of this verify, seen by the child. */
    char *objs[] = {S, M, V};
    const char *names[] = {"S", "M", "V"};
    for (int i = 0; i < 3 && token && is_child; i++)
        if (objs[i])
            wl_check(c, *TOKEN_PARENT(objs[i], token_len(objs[i])) == token,
                     "child: %s holds parent token %#llx, expected %#llx", names[i],
                     (unsigned long long)*TOKEN_PARENT(objs[i], token_len(objs[i])), (unsigned long long)token);
}

static void check_all(struct wl_checks *c)
{
    if (H)
        check_h(c);
    if (G) {
        wl_check_pattern(c, "G head", G, MIB, 20);
        check_zero(c, "G middle", G + MIB, 64 * MIB);
        wl_check_pattern(c, "G tail", G + G1 - 4096, 4096, 21);
        check_page_size(c, "G", G, 1024 * 1024);
    }
}

static __attribute__((noreturn)) void child_main(void)
{
    is_child = 1;
    if (H)
        wl_fill(H, H2, 50);  /* a huge page of its own, copied on write */
    board->done = (uint64_t)-1;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = board->gen;
        if (g == seen) {
            wl_sleep_ms(5);
            continue;
        }
        seen = g;
        struct wl_checks c;
        wl_checks_init(&c);
        check_all(&c);
        check_shared(&c, g);
        /* The child's token, for the parent to see. */
        char *objs[] = {S, M, V};
        for (int i = 0; i < 3; i++)
            if (objs[i])
                *TOKEN_CHILD(objs[i], token_len(objs[i])) = g ^ 0xc417d;
        size_t n = strnlen(c.msg, sizeof board->what - 1);
        memcpy(board->what, c.msg, n);
        board->what[n] = '\0';
        board->ok = c.failed == 0;
        __atomic_store_n(&board->done, g, __ATOMIC_SEQ_CST);
    }
}

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    check_all(c);
    check_shared(c, 0);
    char *objs[] = {S, M, V};
    const char *names[] = {"S", "M", "V"};
    if (child > 0) {
        uint64_t g = board->gen + 1;
        for (int i = 0; i < 3; i++)
            if (objs[i])
                *TOKEN_PARENT(objs[i], token_len(objs[i])) = g;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        board->gen = g;
        const uint64_t deadline = wl_now_ns() + 10000000000ULL;
        while (__atomic_load_n(&board->done, __ATOMIC_SEQ_CST) != g && wl_now_ns() < deadline)
            wl_sleep_ms(2);
        if (wl_check(c, board->done == g, "the child did not answer within 10 s"))
            wl_check(c, board->ok, "child: %s", board->what);
        for (int i = 0; i < 3; i++)
            if (objs[i])
                wl_check(c, *TOKEN_CHILD(objs[i], token_len(objs[i])) == (g ^ 0xc417d),
                         "parent: %s holds child token %#llx, expected %#llx", names[i],
                         (unsigned long long)*TOKEN_CHILD(objs[i], token_len(objs[i])),
                         (unsigned long long)(g ^ 0xc417d));
        if (exiting) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
        }
    }
}

static char *huge_map(size_t len, int flags, const char *what)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap of %s (MAP_HUGETLB): are huge pages reserved (/proc/sys/vm/nr_hugepages)?", what);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: huge CTL_DIR 2m|1g|shared|shared1g");
    const char *ctl = argv[1];
    mode = argv[2];
    board = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        wl_die("mmap");
    if (strcmp(mode, "2m") == 0) {
        H = huge_map(4 * H2, MAP_PRIVATE | MAP_HUGE_2MB_, "H");
        wl_fill(H, H2, 10);
        wl_fill(H + 2 * H2, H2, 12);
        wl_fill(H + 3 * H2, 4096, 13);
        if (mprotect(H + 3 * H2, H2, PROT_READ) != 0)
            wl_die("mprotect");
    } else if (strcmp(mode, "1g") == 0) {
        G = huge_map(G1, MAP_PRIVATE | MAP_HUGE_1GB_, "G");
        wl_fill(G, MIB, 20);
        wl_fill(G + G1 - 4096, 4096, 21);
    } else if (strcmp(mode, "shared") == 0 || strcmp(mode, "shared1g") == 0) {
        const int big = strcmp(mode, "shared1g") == 0;
        s_page = big ? G1 : H2;
        s_len = big ? G1 : 2 * H2;
        S = huge_map(s_len, MAP_SHARED | (big ? MAP_HUGE_1GB_ : MAP_HUGE_2MB_), "S");
        if (big) {
            wl_fill(S, MIB, 40);
            wl_fill(S + s_len - 4096, 4096 - 128, 41);
        } else {
            wl_fill(S, H2 - 4096, 40);
            wl_fill(S + H2, 4096, 41);
        }
        if (!big) {
            mfd = memfd_create("hugeshm", MFD_HUGETLB_ | MAP_HUGE_2MB_);
            if (mfd < 0 || ftruncate(mfd, H2) != 0)
                wl_die("hugetlb memfd");
            M = mmap(NULL, H2, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
            if (M == MAP_FAILED)
                wl_die("mmap of the hugetlb memfd");
            wl_fill(M, 4096, 42);
            wl_fill(M + H2 - 4096, 4096 - 128, 43);
            int id = shmget(IPC_PRIVATE, H2 + 4096, IPC_CREAT | 0600 | SHM_HUGETLB_ | MAP_HUGE_2MB_);
            if (id < 0)
                wl_die("shmget SHM_HUGETLB");
            V = shmat(id, NULL, 0);
            if (V == (void *)-1)
                wl_die("shmat");
            if (shmctl(id, IPC_RMID, NULL) != 0)
                wl_die("IPC_RMID");
            wl_fill(V, 4096, 44);
        }
    } else {
        wl_die("unknown mode %s", mode);
    }
    if (H || S) {
        child = fork();
        if (child < 0)
            wl_die("fork");
        if (child == 0)
            child_main();
        const uint64_t deadline = wl_now_ns() + 10000000000ULL;
        while (__atomic_load_n(&board->done, __ATOMIC_SEQ_CST) != (uint64_t)-1 && wl_now_ns() < deadline)
            wl_sleep_ms(2);
        if (board->done != (uint64_t)-1)
            wl_die("the child did not set up within 10 s");
        board->done = 0;
    }
    char layout[64];
    snprintf(layout, sizeof layout, "child %d\n", (int)child);
    wl_write_file_atomic(ctl, "layout", layout);
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "hugetlb memory, content and page size as set up");
}
