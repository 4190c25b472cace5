/* Memory that changes between dumps, for incremental dumps
 * (tests/e2e/test_incremental.py).
 *
 * argv[2] (optional) "fork": a child is forked at step 1 (after the parent
 * image) and holds a copy of the memory it checks itself on each step.
 *
 * A 16 MiB private anonymous region whose page i holds, at step s, a pattern
 * of (i, the number of steps <= s that wrote page i). Steps come from the
 * test: it writes <ctl>/step holding the step number; the workload applies
 * the steps up to it and writes <ctl>/stepped with it. Step s writes 8 pages
 * in a row and one page elsewhere; step 1 also unmaps the 1 MiB region "gone"
 * and maps a 2 MiB region "fresh" with its own pattern. Verify checks every
 * byte of every region against the step the workload is at (which it reports:
 * "step=S"), that "gone" is unmapped, and the forked child's state. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096u
#define NPAGES 4096u /* 16 MiB */
#define GONE_LEN (1u << 20)
#define FRESH_LEN (2u << 20)

static unsigned char *region, *gone, *fresh;
static int step;
static pid_t child;

static int touched(unsigned i, int s)
{
    unsigned start = (unsigned)(s * 97) % (NPAGES - 8);
    return (i >= start && i < start + 8) || i == (unsigned)(s * 1543) % NPAGES;
}

static unsigned gen_of(unsigned i, int upto)
{
    unsigned g = 0;
    for (int s = 1; s <= upto; s++)
        g += touched(i, s);
    return g;
}

static void fill(unsigned char *p, unsigned i, unsigned g, unsigned salt)
{
    for (unsigned j = 0; j < PAGE; j++)
        p[j] = (unsigned char)(i * 131u + g * 29u + j * 7u + salt);
}

static void apply(int s)
{
    for (unsigned i = 0; i < NPAGES; i++)
        if (touched(i, s))
            fill(region + (size_t)i * PAGE, i, gen_of(i, s), 0);
    if (s == 1) {
        if (munmap(gone, GONE_LEN) != 0)
            wl_die("munmap");
        fresh = mmap(NULL, FRESH_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (fresh == MAP_FAILED)
            wl_die("mmap fresh");
        for (unsigned i = 0; i < FRESH_LEN / PAGE; i++)
            fill(fresh + (size_t)i * PAGE, i, 0, 77);
    }
    step = s;
}

static int region_ok(struct wl_checks *c, const char *what, unsigned char *base, unsigned n, int upto, unsigned salt)
{
    static unsigned char want[PAGE];
    for (unsigned i = 0; i < n; i++) {
        fill(want, i, upto < 0 ? 0 : gen_of(i, upto), salt);
        if (!wl_check(c, memcmp(base + (size_t)i * PAGE, want, PAGE) == 0, "%s page %u differs at step %d", what, i,
                      step))
            return 0;
    }
    return 1;
}

static void check_all(struct wl_checks *c)
{
    region_ok(c, "region", region, NPAGES, step, 0);
    if (step >= 1) {
        region_ok(c, "fresh", fresh, FRESH_LEN / PAGE, -1, 77);
        unsigned char v;
        /* (unless "fresh" took its place) */
        if (gone + GONE_LEN <= fresh || gone >= fresh + FRESH_LEN)
            wl_check(c, mincore(gone, PAGE, &v) != 0 && errno == ENOMEM, "the unmapped region is mapped again");
    } else {
        region_ok(c, "gone", gone, GONE_LEN / PAGE, -1, 33);
    }
}

static int read_int(const char *dir, const char *name)
{
    char path[WL_PATH_MAX], buf[32];
    wl_path(path, sizeof path, dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = wl_pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    return atoi(buf);
}

/* The forked child: applies steps as the parent does (it reads the same step
 * file) and reports into <ctl>/child-result on a child-verify request. */
static void child_loop(const char *dir)
{
    for (;;) {
        int want = read_int(dir, "step");
        while (want > step)
            apply(step + 1);
        if (read_int(dir, "child-verify") >= 0) {
            char path[WL_PATH_MAX];
            wl_path(path, sizeof path, dir, "child-verify");
            unlink(path);
            struct wl_checks c;
            wl_checks_init(&c);
            check_all(&c);
            char line[WL_MSG_MAX + 64];
            snprintf(line, sizeof line, "%s step=%d %s\n", c.failed ? "FAIL" : "OK", step, c.msg);
            wl_write_file_atomic(dir, "child-result", line);
        }
        wl_sleep_ms(10);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: incr CTLDIR [fork]");
    const char *dir = argv[1];
    const int do_fork = argc > 2 && strcmp(argv[2], "fork") == 0;
    region = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    gone = mmap(NULL, GONE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || gone == MAP_FAILED)
        wl_die("mmap");
    for (unsigned i = 0; i < NPAGES; i++)
        fill(region + (size_t)i * PAGE, i, 0, 0);
    for (unsigned i = 0; i < GONE_LEN / PAGE; i++)
        fill(gone + (size_t)i * PAGE, i, 0, 33);
    char buf[64];
    wl_ready(dir);
    for (;;) {
        int want = read_int(dir, "step");
        if (want > step) {
            while (want > step)
                apply(step + 1);
            if (do_fork && !child) {
                child = fork();
                if (child < 0)
                    wl_die("fork");
                if (child == 0)
                    child_loop(dir);
            }
            snprintf(buf, sizeof buf, "%d %d\n", step, (int)child);
            wl_write_file_atomic(dir, "stepped", buf);
        }
        int req = wl_poll_verify(dir);
        if (req != WL_VERIFY_NONE) {
            struct wl_checks c;
            wl_checks_init(&c);
            check_all(&c);
            if (child)
                wl_check(&c, kill(child, 0) == 0, "the forked child %d is gone", (int)child);
            snprintf(buf, sizeof buf, "step=%d", step);
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
