/* shanon: shared memory whose pages only the shmem object holds: written by
 * processes that have exited since, so no live process has them in its page
 * table (what PostgreSQL's exited backends leave in its shared buffers).
 * Mostly shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS); a memfd and a
 * SysV segment the same way.
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
 * R3  a memfd of 8 pages, mapped shared (its fd closed): a child writes page
 *     6 and exits; the parent writes page 0.
 * R4  a SysV segment of 8 pages (IPC_PRIVATE, marked removed): a child writes
 *     page 3 and exits; the parent writes page 1.
 * M   one page, where the parent asks a live child C (forked last, which
 *     maps them all, one object each) for an answer and C gives its checks.
 *
 * Nobody reads R1-R4 through a mapping before the exit request: a read
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
#include <sys/shm.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096UL
#define MBOX 64
#define NREG 4
#define R1_TOKEN 0 /* the pages whose last 16 bytes carry token and answer */
#define R2_TOKEN 24

/* A region: `base` maps object page `first` on, `pages` of them. */
struct region {
    const char *name;
    char *base;
    int first, pages;
    int written[4], nwritten; /* object pages written (and still mapped) */
};
static struct region reg[NREG] = {
    {"R1", NULL, 0, 64, {0, 5, 9, 63}, 4},
    {"R2", NULL, 8, 24, {12, 16, 20, R2_TOKEN}, 4}, /* 2 too, but unmapped */
    {"R3 (memfd)", NULL, 0, 8, {0, 6}, 2},
    {"R4 (SysV)", NULL, 0, 8, {1, 3}, 2},
};

struct mbox {
    volatile uint64_t token;  /* parent -> child */
    volatile uint64_t answer; /* child -> parent, once its checks are done */
    volatile int ok;          /* the child's own checks passed */
    char what[256];
};

static struct mbox *m;
static const char *ctl_dir;

static uint64_t seed(int region, int page) { return 0x5a000ull + (uint64_t)region * 1000 + (uint64_t)page; }
static char *page_of(int r, int page) { return reg[r].base + (size_t)(page - reg[r].first) * PAGE; }
static void fill_page(char *p, int r, int page) { wl_fill(p, PAGE - MBOX, seed(r + 1, page)); }

/* New fds on the objects (/proc/self/map_files/START-END of a mapping: any
 * mapping of an object opens the object itself). */
struct objects {
    int fd[NREG];
};

static int open_objects(struct wl_checks *c, struct objects *o)
{
    int ok = 1;
    for (int r = 0; r < NREG; r++) {
        /* R2's last VMA (object pages 20-31) is whole; the others are one VMA. */
        char *start = r == 1 ? page_of(1, 20) : reg[r].base;
        size_t len = r == 1 ? 12 * PAGE : (size_t)reg[r].pages * PAGE;
        char path[96];
        snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)start,
                 (unsigned long)start + len);
        o->fd[r] = open(path, O_RDWR | O_CLOEXEC);
        ok &= wl_check(c, o->fd[r] >= 0, "open %s of %s: %s", path, reg[r].name, strerror(errno));
    }
    return ok;
}

static void close_objects(struct objects *o)
{
    for (int r = 0; r < NREG; r++)
        if (o->fd[r] >= 0)
            close(o->fd[r]);
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
    for (int r = 0; r < NREG; r++)
        for (int i = 0; i < reg[r].nwritten; i++) {
            int page = reg[r].written[i];
            snprintf(what, sizeof what, "%s: %s page %d%s", who, reg[r].name, page, mapped ? " (mapped)" : "");
            const char *p = buf;
            if (mapped)
                p = page_of(r, page);
            else if (!wl_check(c, pread(o->fd[r], buf, PAGE, (off_t)(page * PAGE)) == PAGE, "%s: pread: %s", what,
                               strerror(errno)))
                continue;
            wl_check_pattern(c, what, p, PAGE - MBOX, seed(r + 1, page));
        }
}

/* The objects hold exactly the pages written: the others are holes. */
static void check_holes(struct wl_checks *c)
{
    unsigned char vec[64];
    for (int r = 0; r < NREG; r++) {
        if (!wl_check(c, mincore(reg[r].base, (size_t)reg[r].pages * PAGE, vec) == 0, "mincore %s: %s",
                      reg[r].name, strerror(errno)))
            continue;
        for (int i = 0; i < reg[r].pages; i++) {
            int page = reg[r].first + i, want = 0;
            for (int k = 0; k < reg[r].nwritten; k++)
                want |= reg[r].written[k] == page;
            wl_check(c, (vec[i] & 1) == want, "%s page %d: %s expected, actual %s", reg[r].name, page,
                     want ? "data" : "a hole", vec[i] & 1 ? "data" : "a hole");
        }
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
            if (lo != (unsigned long)page_of(1, want[k].first))
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
            wl_check(&c, slot(o.fd[0], R1_TOKEN, 0) == t && slot(o.fd[1], R2_TOKEN, 0) == t,
                     "child: the token in R1 %#llx and R2 %#llx, expected %#llx",
                     (unsigned long long)slot(o.fd[0], R1_TOKEN, 0), (unsigned long long)slot(o.fd[1], R2_TOKEN, 0),
                     (unsigned long long)t);
        }
        close_objects(&o);
        size_t n = strnlen(c.msg, sizeof m->what - 1);
        memcpy(m->what, c.msg, n);
        m->what[n] = '\0';
        m->ok = c.failed == 0;
        put_slot(page_of(0, R1_TOKEN), 1, t + 1);
        put_slot(page_of(1, R2_TOKEN), 1, t + 1);
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

static void write_r1_page5(void) { fill_page(page_of(0, 5), 0, 5); }
static void write_r1_page9(void) { fill_page(page_of(0, 9), 0, 9); }
static void grandchild_writes(void) { run_child(write_r1_page9); }
static void write_r2_pages(void) /* before R2's first pages are unmapped */
{
    fill_page(reg[1].base + 2 * PAGE, 1, 2);
    fill_page(reg[1].base + 12 * PAGE, 1, 12);
    fill_page(reg[1].base + 20 * PAGE, 1, 20);
}
static void write_r3_r4(void)
{
    fill_page(page_of(2, 6), 2, 6);
    fill_page(page_of(3, 3), 3, 3);
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
        put_slot(page_of(0, R1_TOKEN), 0, token);
        put_slot(page_of(1, R2_TOKEN), 0, token);
        __sync_synchronize();
        m->token = token;
        uint64_t deadline = wl_now_ns() + 5000000000ULL;
        while (m->answer != token + 1 && wl_now_ns() < deadline)
            wl_sleep_ms(2);
        if (wl_check(&c, m->answer == token + 1, "the child did not answer within 5 s")) {
            wl_check(&c, m->ok, "child: %s", m->what);
            wl_check(&c, slot(o.fd[0], R1_TOKEN, 1) == token + 1 && slot(o.fd[1], R2_TOKEN, 1) == token + 1,
                     "the child's answer in R1 %#llx and R2 %#llx, expected %#llx",
                     (unsigned long long)slot(o.fd[0], R1_TOKEN, 1), (unsigned long long)slot(o.fd[1], R2_TOKEN, 1),
                     (unsigned long long)token + 1);
        }
    }
    close_objects(&o);
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

    reg[0].base = map_shared(64);
    fill_page(page_of(0, 0), 0, 0);
    run_child(write_r1_page5);
    run_child(grandchild_writes);
    fill_page(page_of(0, 63), 0, 63);

    char *r2 = map_shared(32);
    reg[1].base = r2; /* object page 0 for now */
    run_child(write_r2_pages);
    fill_page(r2 + 16 * PAGE, 1, 16);
    fill_page(r2 + R2_TOKEN * PAGE, 1, R2_TOKEN);
    if (munmap(r2, 8 * PAGE) != 0)
        wl_die("munmap the first pages of R2");
    size_t rest = 24 * PAGE;
    void *dest = mmap(NULL, rest, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dest == MAP_FAILED)
        wl_die("mmap a place for R2");
    void *moved = mremap(r2 + 8 * PAGE, rest, rest, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    if (moved != dest)
        wl_die("mremap R2");
    reg[1].base = moved;
    if (mprotect(page_of(1, 16), 4 * PAGE, PROT_READ) != 0)
        wl_die("mprotect R2 pages 16-19");

    int mfd = memfd_create("shanon", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, 8 * PAGE) != 0)
        wl_die("memfd R3");
    reg[2].base = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (reg[2].base == MAP_FAILED)
        wl_die("mmap R3");
    close(mfd);
    int sid = shmget(IPC_PRIVATE, 8 * PAGE, IPC_CREAT | 0600);
    if (sid < 0 || (reg[3].base = shmat(sid, NULL, 0)) == (void *)-1)
        wl_die("SysV R4");
    run_child(write_r3_r4);
    if (shmctl(sid, IPC_RMID, NULL) != 0) /* it lives as long as it is attached */
        wl_die("IPC_RMID R4");
    fill_page(page_of(2, 0), 2, 0);
    fill_page(page_of(3, 1), 3, 1);
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
            for (int r = 0; r < NREG; r++)
                for (int i = 0; i < reg[r].nwritten; i++)
                    if (!(r == 1 && reg[r].written[i] == 16)) /* read-only */
                        memset(page_of(r, reg[r].written[i]), 0xa5, 64);
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
