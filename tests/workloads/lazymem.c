/* Memory for lazy restores (tests/e2e/test_lazy.py, bench/bench_lazy.py).
 *
 * lazymem CTLDIR MIB [tree]
 *
 * A private anonymous region of MIB MiB whose every page holds a pattern of
 * its index, a 16 MiB region "holes" where only every fourth page was written
 * (the others must read zero), a 16 MiB region "moving" and a 16 MiB region
 * "unmapping". With "tree", a child is forked before ready; it maps and fills
 * an 8 MiB region of its own (none of it shared with the parent) and checks
 * it on <ctl>/child-verify into <ctl>/child-result.
 *
 * Three more regions whose pages are not all written (post-copy asks the
 * source which exist, mem/existing_pages.h): "zeroread", 16 MiB only read
 * (the zero page: must read zero); "sparse", 256 MiB with one page written
 * every 64 MiB (the rest must read zero); "filepriv", a private mapping of a
 * 4 MiB file <ctl>/filepriv.dat whose even pages were written (copied on
 * write) and odd pages only read (they must read the file).
 *
 * <ctl>/act (written by the test while pages may still be missing) makes the
 * program change its memory, as a program could during a lazy restore:
 *   - a child is forked that checks every page of every region and exits 0
 *     or 1 (the result is in the next verify);
 *   - MADV_DONTNEED on pages 16..31 of the main region (they read zero now);
 *   - "moving" is mremap'd to a new address (its bytes follow it);
 *   - the second half of "unmapping" is unmapped and mapped afresh (zero).
 * The program answers <ctl>/acted. Verify checks every byte of every region
 * against what it must hold (after act, if it acted). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096u
#define SMALL (16u << 20)
#define DROP_FIRST 16u
#define DROP_LAST 32u

#define SPARSE (256u << 20)
#define SPARSE_EVERY 16384u /* pages: 64 MiB */
#define FILEPRIV (4u << 20)

static unsigned char *region, *holes, *moving, *unmapping, *zeroread, *sparse, *filepriv;
static size_t region_len;
static int acted, fork_child_status = -1;

static void fill(unsigned char *p, size_t i, unsigned salt)
{
    for (unsigned j = 0; j < PAGE; j++)
        p[j] = (unsigned char)(i * 131u + j * 7u + salt + (i >> 8));
}

static unsigned char *map_filled(size_t len, unsigned salt, unsigned every)
{
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap of %zu bytes", len);
    for (size_t i = 0; i < len / PAGE; i += every)
        fill(p + i * PAGE, i, salt);
    return p;
}

/* Checks pages [first, last) of `base` (pattern `salt` on every `every`-th
 * page, zero elsewhere; zero_from..zero_to all zero). */
static void check_pages(struct wl_checks *c, const char *what, const unsigned char *base, size_t first, size_t last,
                        unsigned salt, unsigned every, size_t zero_from, size_t zero_to)
{
    static unsigned char want[PAGE];
    int bad = 0;
    for (size_t i = first; i < last && bad < 3; i++) {
        if (i % every == 0 && !(i >= zero_from && i < zero_to))
            fill(want, i, salt);
        else
            memset(want, 0, PAGE);
        if (memcmp(base + i * PAGE, want, PAGE) != 0) {
            bad++;
            wl_check(c, 0, "%s page %zu differs (first byte %u, expected %u)", what, i, base[i * PAGE], want[0]);
        }
    }
    wl_check(c, 1, "%s", what);
}

/* The file's pattern (salt 6) on odd pages, the written one (salt 7) on even. */
static void check_filepriv(struct wl_checks *c)
{
    static unsigned char want[PAGE];
    int bad = 0;
    for (size_t i = 0; i < FILEPRIV / PAGE && bad < 3; i++) {
        fill(want, i, i % 2 ? 6 : 7);
        if (memcmp(filepriv + i * PAGE, want, PAGE) != 0) {
            bad++;
            wl_check(c, 0, "filepriv page %zu differs (first byte %u, expected %u)", i, filepriv[i * PAGE], want[0]);
        }
    }
    wl_check(c, 1, "filepriv");
}

static void map_others(const char *dir)
{
    zeroread = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (zeroread == MAP_FAILED)
        wl_die("mmap zeroread");
    unsigned sum = 0;
    for (size_t i = 0; i < SMALL; i += PAGE)
        sum += ((volatile unsigned char *)zeroread)[i];
    if (sum != 0)
        wl_die("fresh memory reads %u", sum);
    sparse = map_filled(SPARSE, 8, SPARSE_EVERY);
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, dir, "filepriv.dat");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        wl_die("open %s", path);
    static unsigned char page[PAGE];
    for (size_t i = 0; i < FILEPRIV / PAGE; i++) {
        fill(page, i, 6);
        if (pwrite(fd, page, PAGE, (off_t)(i * PAGE)) != PAGE)
            wl_die("write %s", path);
    }
    filepriv = mmap(NULL, FILEPRIV, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (filepriv == MAP_FAILED)
        wl_die("mmap %s", path);
    close(fd);
    for (size_t i = 0; i < FILEPRIV / PAGE; i++) {
        if (i % 2 == 0)
            fill(filepriv + i * PAGE, i, 7);
        else
            sum += ((volatile unsigned char *)filepriv)[i * PAGE];
    }
}

static void check_all(struct wl_checks *c)
{
    const size_t n = region_len / PAGE, s = SMALL / PAGE;
    check_pages(c, "zeroread", zeroread, 0, s, 9, 1, 0, s);
    check_pages(c, "sparse", sparse, 0, SPARSE / PAGE, 8, SPARSE_EVERY, 0, 0);
    check_filepriv(c);
    check_pages(c, "region", region, 0, n, 1, 1, acted ? DROP_FIRST : 0, acted ? DROP_LAST : 0);
    check_pages(c, "holes", holes, 0, s, 2, 4, 0, 0);
    check_pages(c, "moving", moving, 0, s, 3, 1, 0, 0);
    check_pages(c, "unmapping", unmapping, 0, s, 4, 1, acted ? s / 2 : 0, acted ? s : 0);
}

static void act(void)
{
    /* A child that checks everything, forked while pages may be missing. */
    pid_t pid = fork();
    if (pid < 0)
        wl_die("fork");
    if (pid == 0) {
        struct wl_checks c;
        wl_checks_init(&c);
        check_all(&c);
        if (c.failed)
            fprintf(stderr, "forked child: %s\n", c.msg);
        _exit(c.failed ? 1 : 0);
    }
    if (madvise(region + DROP_FIRST * PAGE, (DROP_LAST - DROP_FIRST) * PAGE, MADV_DONTNEED) != 0)
        wl_die("madvise");
    /* A new place: reserved first, so that the move goes elsewhere. */
    void *to = mmap(NULL, SMALL + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (to == MAP_FAILED)
        wl_die("mmap");
    void *moved = mremap(moving, SMALL, SMALL, MREMAP_MAYMOVE | MREMAP_FIXED, (char *)to + PAGE);
    if (moved == MAP_FAILED)
        wl_die("mremap");
    moving = moved;
    unsigned char *half = unmapping + SMALL / 2;
    if (munmap(half, SMALL / 2) != 0)
        wl_die("munmap");
    if (mmap(half, SMALL / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != half)
        wl_die("mmap again");
    int st;
    if (waitpid(pid, &st, 0) != pid)
        wl_die("waitpid");
    fork_child_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    acted = 1;
}

static int take_file(const char *dir, const char *name)
{
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, dir, name);
    if (access(path, F_OK) != 0)
        return 0;
    unlink(path);
    return 1;
}

static void child_loop(const char *dir)
{
    unsigned char *own = map_filled(8u << 20, 5, 1);
    for (;;) {
        if (take_file(dir, "child-verify")) {
            struct wl_checks c;
            wl_checks_init(&c);
            check_pages(&c, "child region", own, 0, (8u << 20) / PAGE, 5, 1, 0, 0);
            char line[WL_MSG_MAX + 64];
            snprintf(line, sizeof line, "%s %s\n", c.failed ? "FAIL" : "OK", c.msg);
            wl_write_file_atomic(dir, "child-result", line);
        }
        wl_sleep_ms(10);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: lazymem CTLDIR MIB [tree]");
    const char *dir = argv[1];
    region_len = (size_t)atoi(argv[2]) << 20;
    pid_t child = 0;
    if (argc > 3 && strcmp(argv[3], "tree") == 0) {
        child = fork();
        if (child < 0)
            wl_die("fork");
        if (child == 0)
            child_loop(dir);
    }
    region = map_filled(region_len, 1, 1);
    holes = map_filled(SMALL, 2, 4);
    moving = map_filled(SMALL, 3, 1);
    unmapping = map_filled(SMALL, 4, 1);
    map_others(dir);
    wl_ready(dir);
    for (;;) {
        if (take_file(dir, "act")) {
            act();
            wl_write_file_atomic(dir, "acted", "1\n");
        }
        int req = wl_poll_verify(dir);
        if (req != WL_VERIFY_NONE) {
            struct wl_checks c;
            wl_checks_init(&c);
            check_all(&c);
            if (acted)
                wl_check(&c, fork_child_status == 0, "the child forked during the lazy phase found %d", fork_child_status);
            if (child)
                wl_check(&c, kill(child, 0) == 0, "the child %d is gone", (int)child);
            char buf[64];
            snprintf(buf, sizeof buf, "%zu MiB acted=%d", region_len >> 20, acted);
            int ok = wl_report(dir, &c, buf);
            if (req == WL_VERIFY_EXIT) {
                if (child) {
                    kill(child, SIGKILL);
                    waitpid(child, NULL, 0);
                }
                exit(ok ? 0 : 1);
            }
        }
        wl_sleep_ms(10);
    }
}
