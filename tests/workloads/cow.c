/* cow: private anonymous memory shared copy-on-write between a parent and its
 * children, as fork(2) leaves it.
 *
 * Usage: cow CTL_DIR MIB
 *
 * The parent fills MIB MiB of private anonymous memory with a pattern, then
 * forks two children: C1 rewrites its first 16 pages with its own pattern
 * (those are its own copies), C2 writes nothing (everything stays shared).
 * Each process also has a small region of its own.
 * On verify every process checks its view of the big region (its own pages
 * and the shared ones, exact bytes) and its own region; the parent then writes
 * one page of the big region and checks that the children do not see it (the
 * sharing is copy-on-write, not shared memory), and puts it back.
 * CTL_DIR/layout holds "big ADDR" and "pages N" for the harness, which counts
 * the physical pages parent and children share through /proc/PID/pagemap.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096
#define OWN_PAGES 16

struct board {
    volatile int gen;             /* bumped by the parent for each check */
    volatile int done[2];         /* generation each child last checked */
    volatile int ok[2];
    volatile int poke_gen;        /* the parent wrote page 100: children check it */
    char what[2][160];
};

static char *big;
static size_t npages;
static struct board *b;

static int check_big(int who, char *what, size_t n)
{
    for (size_t i = 0; i < npages; i++) {
        uint64_t seed = (who == 1 && i < OWN_PAGES) ? 0xc1c1 : 0xb16;
        long bad = wl_first_mismatch(big + i * PAGE, PAGE, seed * 1000003 + i);
        if (bad >= 0) {
            snprintf(what, n, "process %d: big page %zu differs at byte %ld", who, i, bad);
            return 0;
        }
    }
    return 1;
}

static void child(int who, char *own)
{
    if (who == 1)
        for (size_t i = 0; i < OWN_PAGES; i++)
            wl_fill(big + i * PAGE, PAGE, 0xc1c1ull * 1000003 + i);
    int seen = 0;
    for (;;) {
        wl_sleep_ms(5);
        int gen = b->gen;
        if (gen == seen)
            continue;
        seen = gen;
        char what[160] = "";
        int ok = check_big(who, what, sizeof what);
        if (ok && wl_first_mismatch(own, PAGE, 0x0c + (uint64_t)who) >= 0) {
            ok = 0;
            snprintf(what, sizeof what, "process %d: own page differs", who);
        }
        snprintf(b->what[who - 1], sizeof b->what[0], "%s", what);
        b->ok[who - 1] = ok;
        __atomic_store_n(&b->done[who - 1], gen, __ATOMIC_RELEASE);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: %s CTL_DIR MIB", argv[0]);
    const char *ctl = argv[1];
    npages = (size_t)atoi(argv[2]) * 256;
    if (npages < OWN_PAGES + 128)
        wl_die("MIB too small");
    b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    big = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED || big == MAP_FAILED)
        wl_die("mmap");
    for (size_t i = 0; i < npages; i++)
        wl_fill(big + i * PAGE, PAGE, 0xb16ull * 1000003 + i);
    pid_t kids[2];
    for (int who = 1; who <= 2; who++) {
        kids[who - 1] = fork();
        if (kids[who - 1] == 0) {
            char *own = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (own == MAP_FAILED)
                wl_die("mmap own");
            wl_fill(own, PAGE, 0x0c + (uint64_t)who);
            child(who, own);
        }
    }
    char *own = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (own == MAP_FAILED)
        wl_die("mmap own");
    wl_fill(own, PAGE, 0x0c);
    char layout[256];
    snprintf(layout, sizeof layout, "big %lx\npages %zu\nchild1 %d\nchild2 %d\n", (unsigned long)big, npages,
             (int)kids[0], (int)kids[1]);
    wl_write_file_atomic(ctl, "layout", layout);
    /* C1's own pages are written before we say ready. */
    b->gen = 1;
    for (int spins = 0; b->done[0] != 1 || b->done[1] != 1; spins++) {
        if (spins > 5000)
            wl_die("children did not start");
        wl_sleep_ms(2);
    }
    wl_ready(ctl);
    for (;;) {
        wl_sleep_ms(10);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        struct wl_checks c;
        wl_checks_init(&c);
        char what[160] = "";
        wl_check(&c, check_big(0, what, sizeof what), "%s", what);
        wl_check(&c, wl_first_mismatch(own, PAGE, 0x0c) < 0, "parent: own page differs");
        /* Copy-on-write, not shared: a page the parent writes stays its own. */
        wl_fill(big + 100 * PAGE, PAGE, 0xdead);
        int gen = ++b->gen;
        uint64_t deadline = wl_now_ns() + 5000000000ull;
        for (int k = 0; k < 2; k++) {
            while (__atomic_load_n(&b->done[k], __ATOMIC_ACQUIRE) != gen && wl_now_ns() < deadline)
                wl_sleep_ms(1);
            wl_check(&c, b->done[k] == gen, "child %d did not check within 5 s", k + 1);
            wl_check(&c, b->ok[k], "%s", b->what[k]);
        }
        wl_fill(big + 100 * PAGE, PAGE, 0xb16ull * 1000003 + 100);
        char summary[128];
        snprintf(summary, sizeof summary, "cow pages=%zu", npages);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            for (int k = 0; k < 2; k++) {
                kill(kids[k], SIGKILL);
                waitpid(kids[k], NULL, 0);
            }
            return ok ? 0 : 1;
        }
    }
}
