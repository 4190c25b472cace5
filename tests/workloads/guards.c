/* guards: guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13; on file and
 * shared mappings 6.15) a restore must put back, each checked by the process
 * itself: its own pagemap shows a guard exactly on the guarded pages (bit 58,
 * Linux 6.15), a grandchild forked at verify time that touches a guarded page
 * dies of SIGSEGV, and every other page holds its pattern byte for byte.
 *
 * Usage: guards CTL_DIR
 *
 *   A  16 private anonymous pages, all written, guards on pages 0, 5-6, 15
 *   F  8 pages of a file in CTL_DIR mapped private, pages 0-3 written (copied
 *      on write), guards on pages 2 and 6
 *   S  4 pages of shared anonymous memory, written, a guard on page 1
 * A child forked once A is set up shares A's pages copy-on-write and its
 * guards; it removes the guard of page 5 (and writes there a pattern of its
 * own) and installs one on page 8. It checks its own A through a shared page
 * when the parent verifies; on verify "exit" the parent kills it and exits.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096UL
#define MADV_GUARD_INSTALL_ 102
#define MADV_GUARD_REMOVE_ 103
#define PM_GUARD_REGION (1ULL << 58)

enum { A_PAGES = 16, F_PAGES = 8, S_PAGES = 4 };

static char *A, *F, *S;
static int is_child;

struct board {
    volatile uint64_t gen, done;
    volatile int ok;
    char what[1024];
};
static struct board *board;

static void guard(char *p, size_t page, size_t n, const char *what)
{
    if (madvise(p + page * PAGE, n * PAGE, MADV_GUARD_INSTALL_) != 0)
        wl_die("MADV_GUARD_INSTALL on %s page %zu (guard regions need Linux 6.13, on file and shared mappings 6.15)",
               what, page);
}

/* Whether `page` of a region is guarded, in the region's layout for this
 * process. */
static int a_guarded(size_t i) { return i == 0 || i == 6 || i == 15 || (is_child ? i == 8 : i == 5); }
static int f_guarded(size_t i) { return i == 2 || i == 6; }
static int s_guarded(size_t i) { return i == 1; }

/* Seed of the pattern of a page that is not guarded. */
static uint64_t a_seed(size_t i) { return is_child && i == 5 ? 500 : 100 + i; }
static uint64_t f_seed(size_t i) { return i < 4 ? 200 + i : 300 + i; }
static uint64_t s_seed(size_t i) { return 400 + i; }

/* A grandchild touches the page: it must die of SIGSEGV. */
static int faults(const char *p)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        (void)*(volatile const char *)p;
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

static void check_region(struct wl_checks *c, const char *name, char *p, size_t pages, int (*guarded)(size_t),
                         uint64_t (*seed)(size_t))
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (!wl_check(c, fd >= 0, "open /proc/self/pagemap: errno %d", errno))
        return;
    for (size_t i = 0; i < pages; i++) {
        char *page = p + i * PAGE;
        uint64_t e = 0;
        if (!wl_check(c, pread(fd, &e, 8, (off_t)((uintptr_t)page / PAGE * 8)) == 8, "%s page %zu: pagemap", name, i))
            continue;
        const int want = guarded(i), has = (e & PM_GUARD_REGION) != 0;
        wl_check(c, has == want, "%s page %zu: guard %s in pagemap (entry %#llx), expected %s", name, i,
                 has ? "set" : "unset", (unsigned long long)e, want ? "set" : "unset");
        if (want) {
            int f = faults(page);
            wl_check(c, f == 1, "%s page %zu: touching the guard %s", name, i,
                     f < 0 ? "could not be tried (fork/waitpid)" : "did not raise SIGSEGV");
        } else if (!has) {
            char what[64];
            snprintf(what, sizeof what, "%s page %zu", name, i);
            wl_check_pattern(c, what, page, PAGE, seed(i));
        }
    }
    close(fd);
}

static void check_all(struct wl_checks *c)
{
    check_region(c, is_child ? "child A" : "A", A, A_PAGES, a_guarded, a_seed);
    if (is_child)
        return;
    check_region(c, "F", F, F_PAGES, f_guarded, f_seed);
    check_region(c, "S", S, S_PAGES, s_guarded, s_seed);
}

static __attribute__((noreturn)) void child_main(void)
{
    is_child = 1;
    if (madvise(A + 5 * PAGE, PAGE, MADV_GUARD_REMOVE_) != 0)
        wl_die("MADV_GUARD_REMOVE");
    wl_fill(A + 5 * PAGE, PAGE, a_seed(5));
    guard(A, 8, 1, "child A");
    board->done = (uint64_t)-1;  /* set up */
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
        size_t n = strnlen(c.msg, sizeof board->what - 1);
        memcpy(board->what, c.msg, n);
        board->what[n] = '\0';
        board->ok = c.failed == 0;
        __atomic_store_n(&board->done, g, __ATOMIC_SEQ_CST);
    }
}

static pid_t child;

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    check_all(c);
    uint64_t g = board->gen + 1;
    board->gen = g;
    const uint64_t deadline = wl_now_ns() + 5000000000ULL;
    while (__atomic_load_n(&board->done, __ATOMIC_SEQ_CST) != g && wl_now_ns() < deadline)
        wl_sleep_ms(2);
    if (wl_check(c, board->done == g, "the child did not answer within 5 s"))
        wl_check(c, board->ok, "child: %s", board->what);
    if (exiting) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: guards CTL_DIR");
    const char *ctl = argv[1];
    board = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    A = mmap(NULL, A_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    S = mmap(NULL, S_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED || A == MAP_FAILED || S == MAP_FAILED)
        wl_die("mmap");
    for (size_t i = 0; i < A_PAGES; i++)
        wl_fill(A + i * PAGE, PAGE, 100 + i);
    guard(A, 0, 1, "A");
    guard(A, 5, 2, "A");
    guard(A, 15, 1, "A");

    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, ctl, "guards.data");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        wl_die("open %s", path);
    char buf[PAGE];
    for (size_t i = 0; i < F_PAGES; i++) {
        wl_fill(buf, PAGE, 300 + i);
        if (wl_pwrite_all(fd, buf, PAGE, (off_t)(i * PAGE)) != 0)
            wl_die("write %s", path);
    }
    F = mmap(NULL, F_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (F == MAP_FAILED)
        wl_die("mmap %s", path);
    close(fd);
    for (size_t i = 0; i < 4; i++)
        wl_fill(F + i * PAGE, PAGE, 200 + i);
    guard(F, 2, 1, "F");
    guard(F, 6, 1, "F");

    for (size_t i = 0; i < S_PAGES; i++)
        wl_fill(S + i * PAGE, PAGE, 400 + i);
    guard(S, 1, 1, "S");

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
    char layout[64];
    snprintf(layout, sizeof layout, "child %d\n", (int)child);
    wl_write_file_atomic(ctl, "layout", layout);
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "guard regions, content and faults as set up");
}
