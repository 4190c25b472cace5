/* shanon: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) whose pages only
 * the shmem object holds: written by processes that have exited since, so no
 * live process has them in its page table (what PostgreSQL's exited backends
 * leave in its shared buffers).
 *
 * Usage: shanon CTL_DIR
 *
 * R1  64 pages. The parent writes page 0; a child writes page 5 and exits; a
 *     grandchild (through a child that exits too) writes page 9 and exits; the
 *     parent writes page 63. Every other page was never touched: a hole.
 * R2  32 pages. A child writes object pages 2, 12 and 20 and exits; the
 *     parent writes page 16. Then the parent unmaps pages 0-7, moves the rest
 *     (mremap) to another address and makes object pages 16-19 read-only:
 *     three VMAs whose file offsets (pgoff) are 8, 16 and 20 pages into one
 *     object.
 * M   one page, where the parent asks a live child C (forked last, which
 *     maps all three, one object each) for an answer and C gives its checks.
 *
 * Nobody reads R1 or R2 through a mapping before the exit request: a read
 * fault maps the neighbouring pages of the object too (fault-around), which
 * would put the exited writers' pages back into a page table. Their bytes are
 * read with pread(2) on the object (/proc/self/map_files/), which does not.
 *
 * On verify the parent checks, first, that the objects hold exactly the pages
 * written (mincore(2) on a shmem mapping reports the object's pages, whoever
 * faulted them: a hole is not resident; no swap is assumed), then the bytes of
 * every written page, the VMA layout of R2 (offsets, permissions, one inode),
 * and that the child sees what it writes: it writes a token into R1 page 0
 * and R2 page 24 through its mappings (a write fault maps one page) and into
 * M; the child checks the bytes of every written page and the token in its
 * own R1 and R2 objects, and writes token+1 back into both through its
 * mappings, which the parent reads in its objects. On verify "exit" the parent also checks every
 * written page through its mappings, then overwrites them (a restore must put
 * the dumped bytes back), kills the child and exits.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096UL
#define MBOX 64
#define R1_PAGES 64
#define R2_PAGES 32
#define R2_CUT 8    /* object pages 0..7 of R2 are unmapped */
#define R1_TOKEN 0  /* the pages whose last 16 bytes carry token and answer */
#define R2_TOKEN 24

static const int r1_written[] = {0, 5, 9, 63};
static const int r2_written[] = {12, 16, 20, 24}; /* 2 too, but unmapped */
#define NR1 (sizeof r1_written / sizeof r1_written[0])
#define NR2 (sizeof r2_written / sizeof r2_written[0])

struct mbox {
    volatile uint64_t token;  /* parent -> child */
    volatile uint64_t answer; /* child -> parent, once its checks are done */
    volatile int ok;          /* the child's own checks passed */
    char what[256];
};

static char *r1, *r2; /* r2 maps object page R2_CUT at r2 */
static struct mbox *m;
static const char *ctl_dir;

static uint64_t seed(int region, int page) { return 0x5a000ull + (uint64_t)region * 1000 + (uint64_t)page; }
static char *r2_page(int page) { return r2 + (size_t)(page - R2_CUT) * PAGE; }
static void fill_page(char *p, int region, int page) { wl_fill(p, PAGE - MBOX, seed(region, page)); }

/* A new fd on the object a mapping maps (/proc/self/map_files/START-END). */
static int open_object(const void *start, size_t len)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)start,
             (unsigned long)start + len);
    return open(path, O_RDWR | O_CLOEXEC);
}

struct objects {
    int r1, r2;
};

static int open_objects(struct wl_checks *c, struct objects *o)
{
    o->r1 = open_object(r1, R1_PAGES * PAGE);
    o->r2 = open_object(r2_page(20), 12 * PAGE);
    return wl_check(c, o->r1 >= 0 && o->r2 >= 0, "open /proc/self/map_files of R1 and R2: %s", strerror(errno));
}

static void close_objects(struct objects *o)
{
    close(o->r1);
    close(o->r2);
}

static uint64_t slot(int fd, int page, int i)
{
    uint64_t v = 0;
    if (pread(fd, &v, 8, (off_t)((page + 1) * PAGE - 16 + 8 * i)) != 8)
        return 0;
    return v;
}

static void put_slot(char *page_addr, int i, uint64_t v) { memcpy(page_addr + PAGE - 16 + 8 * i, &v, 8); }

/* The bytes of every written page (but each page's last 64 bytes), read from
 * the objects (or through the mappings). */
static void check_pages(struct wl_checks *c, const char *who, const struct objects *o, int mapped)
{
    char what[96], buf[PAGE];
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < (k ? NR2 : NR1); i++) {
            int page = k ? r2_written[i] : r1_written[i];
            snprintf(what, sizeof what, "%s: R%d page %d%s", who, k + 1, page, mapped ? " (mapped)" : "");
            const char *p = buf;
            if (mapped)
                p = k ? r2_page(page) : r1 + (size_t)page * PAGE;
            else if (!wl_check(c, pread(k ? o->r2 : o->r1, buf, PAGE, (off_t)(page * PAGE)) == PAGE,
                               "%s: pread: %s", what, strerror(errno)))
                continue;
            wl_check_pattern(c, what, p, PAGE - MBOX, seed(k + 1, page));
        }
}

static int in(const int *set, size_t n, int v)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == v)
            return 1;
    return 0;
}

/* The objects hold exactly the pages written: the others are holes. */
static void check_holes(struct wl_checks *c)
{
    unsigned char vec[R1_PAGES];
    if (wl_check(c, mincore(r1, R1_PAGES * PAGE, vec) == 0, "mincore R1: %s", strerror(errno)))
        for (int i = 0; i < R1_PAGES; i++) {
            int want = in(r1_written, NR1, i);
            wl_check(c, (vec[i] & 1) == want, "R1 page %d: %s expected, actual %s", i, want ? "data" : "a hole",
                     vec[i] & 1 ? "data" : "a hole");
        }
    if (wl_check(c, mincore(r2, (R2_PAGES - R2_CUT) * PAGE, vec) == 0, "mincore R2: %s", strerror(errno)))
        for (int i = R2_CUT; i < R2_PAGES; i++) {
            int want = in(r2_written, NR2, i);
            wl_check(c, (vec[i - R2_CUT] & 1) == want, "R2 object page %d: %s expected, actual %s", i,
                     want ? "data" : "a hole", vec[i - R2_CUT] & 1 ? "data" : "a hole");
        }
}

/* R2 is three VMAs of one object at offsets 8, 16 and 20 pages. */
static void check_r2_layout(struct wl_checks *c)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!wl_check(c, f != NULL, "open /proc/self/maps: %s", strerror(errno)))
        return;
    static const struct {
        int first, pages;
        const char *perms;
    } want[] = {{8, 8, "rw-s"}, {16, 4, "r--s"}, {20, 12, "rw-s"}};
    int found = 0;
    unsigned long inode = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino;
        char perms[5], dev[16];
        int n = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %15s %lu %n", &lo, &hi, perms, &off, dev, &ino, &n) < 6)
            continue;
        line[strcspn(line, "\n")] = '\0';
        for (int k = 0; k < 3; k++) {
            if (lo != (unsigned long)r2_page(want[k].first))
                continue;
            found++;
            wl_check(c, hi - lo == want[k].pages * PAGE && off == want[k].first * PAGE &&
                            strcmp(perms, want[k].perms) == 0 && strcmp(line + n, "/dev/zero (deleted)") == 0,
                     "R2 VMA %d: expected %d pages at offset %#lx %s \"/dev/zero (deleted)\", actual \"%s\"", k,
                     want[k].pages, want[k].first * PAGE, want[k].perms, line);
            if (k == 0)
                inode = ino;
            else
                wl_check(c, ino == inode, "R2 VMA %d: inode %lu, VMA 0 has %lu (one object)", k, ino, inode);
        }
    }
    fclose(f);
    wl_check(c, found == 3, "R2: expected 3 VMAs, found %d", found);
}

static void child_loop(pid_t parent)
{
    uint64_t seen = 0;
    for (;;) {
        if (getppid() != parent)
            _exit(0);
        uint64_t t = m->token;
        if (t == seen) {
            wl_sleep_ms(2);
            continue;
        }
        seen = t;
        struct wl_checks c;
        wl_checks_init(&c);
        struct objects o;
        if (open_objects(&c, &o)) {
            check_pages(&c, "child", &o, 0);
            wl_check(&c, slot(o.r1, R1_TOKEN, 0) == t && slot(o.r2, R2_TOKEN, 0) == t,
                     "child: the token in R1 %#llx and R2 %#llx, expected %#llx",
                     (unsigned long long)slot(o.r1, R1_TOKEN, 0), (unsigned long long)slot(o.r2, R2_TOKEN, 0),
                     (unsigned long long)t);
            close_objects(&o);
        }
        size_t n = strnlen(c.msg, sizeof m->what - 1);
        memcpy(m->what, c.msg, n);
        m->what[n] = '\0';
        m->ok = c.failed == 0;
        put_slot(r1 + R1_TOKEN * PAGE, 1, t + 1);
        put_slot(r2_page(R2_TOKEN), 1, t + 1);
        __sync_synchronize();
        m->answer = t + 1;
    }
}

static void *map_shared(size_t pages)
{
    void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap %zu shared anonymous pages", pages);
    return p;
}

static void run_child(void (*fn)(void))
{
    pid_t p = fork();
    if (p < 0)
        wl_die("fork");
    if (p == 0) {
        fn();
        _exit(0);
    }
    int status;
    if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        wl_die("child %d failed (status %#x)", (int)p, status);
}

static void write_r1_page5(void) { fill_page(r1 + 5 * PAGE, 1, 5); }
static void write_r1_page9(void) { fill_page(r1 + 9 * PAGE, 1, 9); }
static void grandchild_writes(void) { run_child(write_r1_page9); }
static void write_r2_pages(void)
{
    fill_page(r2 + 2 * PAGE, 2, 2);
    fill_page(r2 + 12 * PAGE, 2, 12);
    fill_page(r2 + 20 * PAGE, 2, 20);
}

static int verify(pid_t parent, pid_t child, int verifies, int exiting)
{
    struct wl_checks c;
    wl_checks_init(&c);
    wl_check(&c, wl_getpid() == parent, "pid expected %d actual %d", (int)parent, (int)wl_getpid());
    check_holes(&c); /* first: nothing below reads a hole */
    struct objects o;
    if (open_objects(&c, &o)) {
        check_pages(&c, "parent", &o, 0);
        if (exiting)
            check_pages(&c, "parent", &o, 1);
        check_r2_layout(&c);
        uint64_t token = (wl_now_ns() << 1) | 1;
        put_slot(r1 + R1_TOKEN * PAGE, 0, token);
        put_slot(r2_page(R2_TOKEN), 0, token);
        __sync_synchronize();
        m->token = token;
        uint64_t deadline = wl_now_ns() + 5000000000ULL;
        while (m->answer != token + 1 && wl_now_ns() < deadline)
            wl_sleep_ms(2);
        if (wl_check(&c, m->answer == token + 1, "the child did not answer within 5 s")) {
            wl_check(&c, m->ok, "child: %s", m->what);
            wl_check(&c, slot(o.r1, R1_TOKEN, 1) == token + 1 && slot(o.r2, R2_TOKEN, 1) == token + 1,
                     "the child's answer in R1 %#llx and R2 %#llx, expected %#llx",
                     (unsigned long long)slot(o.r1, R1_TOKEN, 1), (unsigned long long)slot(o.r2, R2_TOKEN, 1),
                     (unsigned long long)token + 1);
        }
        close_objects(&o);
    }
    char summary[128];
    snprintf(summary, sizeof summary, "shanon verifies=%d child=%d", verifies, (int)child);
    return wl_report(ctl_dir, &c, summary);
}
int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    ctl_dir = argv[1];
    const pid_t parent = getpid();

    r1 = map_shared(R1_PAGES);
    fill_page(r1, 1, 0);
    run_child(write_r1_page5);
    run_child(grandchild_writes);
    fill_page(r1 + 63 * PAGE, 1, 63);

    r2 = map_shared(R2_PAGES);
    run_child(write_r2_pages);
    fill_page(r2 + 16 * PAGE, 2, 16);
    fill_page(r2 + R2_TOKEN * PAGE, 2, R2_TOKEN);
    if (munmap(r2, R2_CUT * PAGE) != 0)
        wl_die("munmap the first pages of R2");
    size_t rest = (R2_PAGES - R2_CUT) * PAGE;
    void *dest = mmap(NULL, rest, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dest == MAP_FAILED)
        wl_die("mmap a place for R2");
    void *moved = mremap(r2 + R2_CUT * PAGE, rest, rest, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    if (moved != dest)
        wl_die("mremap R2");
    r2 = moved;
    if (mprotect(r2_page(16), 4 * PAGE, PROT_READ) != 0)
        wl_die("mprotect R2 pages 16-19");
    m = map_shared(1);

    pid_t child = fork();
    if (child < 0)
        wl_die("fork");
    if (child == 0)
        child_loop(parent);
    char buf[64];
    snprintf(buf, sizeof buf, "child %d\n", (int)child);
    wl_write_file_atomic(ctl_dir, "layout", buf);
    wl_ready(ctl_dir);

    for (int verifies = 1;; verifies++) {
        int req;
        while ((req = wl_poll_verify(ctl_dir)) == WL_VERIFY_NONE)
            wl_sleep_ms(10);
        int ok = verify(parent, child, verifies, req == WL_VERIFY_EXIT);
        if (req == WL_VERIFY_EXIT) {
            for (size_t i = 0; i < NR1; i++)
                memset(r1 + (size_t)r1_written[i] * PAGE, 0xa5, 64);
            memset(r2_page(12), 0xa5, 64);
            memset(r2_page(20), 0xa5, 64);
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
