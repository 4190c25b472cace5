/* Memory written continuously while cryo copies it, for pre-copy
 * (tests/e2e/test_precopy.py, bench/bench_precopy.py).
 *
 * Usage: dirtier CTLDIR [MIB [RATE_MIB_S [nochurn]]] (default 64 MiB, 10 MiB/s).
 *
 * A private anonymous region of MIB MiB. Page writes go round it in order,
 * RATE MiB/s (at most 50 ms worth at once, so a pause is not made up for):
 * the w-th write (w from 0) fills page w mod N with the pattern of (page,
 * generation), so after W writes page i holds generation W/N (+1 if i <
 * W mod N). Every 100 ms a "churn" region is unmapped and mapped again (1 or
 * 2 MiB, alternately) with the pattern of its own count: mappings come and go
 * between pre-copy rounds ("nochurn": mapped once, never again). Verify checks every byte of both regions against
 * the counters (a page written after cryo copied it and not copied again
 * comes back one generation old, a torn page has two) and reports
 * "written=W churn=C lastgap_ms=G maxgap_ms=M": G is the last pause of more
 * than 10 ms between two turns of its loop (CLOCK_MONOTONIC), M the longest
 * since the previous verify (then reset), so after a migration on one machine
 * M is the downtime as the program saw it (freeze to resume, plus at most one
 * turn of 2 ms), also when a later turn was slow (a post-copy fault, a busy
 * machine), which G would report instead.
 *
 * While CTLDIR/hold exists (looked for every 64 page writes) it writes
 * nothing: a restored copy then verifies the image's pages themselves, not
 * pages it wrote again since (tests/e2e/test_durability.py, copy-on-write). */
#include <sys/mman.h>

#include "wl_common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)

static uint64_t *region, *churn;
static uint64_t npages, written, churns;
static size_t churn_len;

static uint64_t word(uint64_t i, uint64_t gen, uint64_t j, uint64_t salt)
{
    return (i << 32) ^ (gen * 0x9E3779B97F4A7C15ull) ^ (j * 0x100000001B3ull) ^ salt;
}

static void fill(uint64_t *p, uint64_t i, uint64_t gen, uint64_t salt)
{
    for (uint64_t j = 0; j < WORDS; j++)
        p[j] = word(i, gen, j, salt);
}

static int page_ok(const uint64_t *p, uint64_t i, uint64_t gen, uint64_t salt)
{
    for (uint64_t j = 0; j < WORDS; j++)
        if (p[j] != word(i, gen, j, salt))
            return 0;
    return 1;
}

static uint64_t gen_of(uint64_t i)
{
    return written / npages + (i < written % npages ? 1 : 0);
}

static void remap_churn(void)
{
    if (churn && munmap(churn, churn_len) != 0)
        wl_die("munmap churn");
    churns++;
    churn_len = (churns % 2 ? 1u : 2u) << 20;
    churn = mmap(NULL, churn_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (churn == MAP_FAILED)
        wl_die("mmap churn");
    for (uint64_t i = 0; i < churn_len / PAGE; i++)
        fill(churn + i * WORDS, i, churns, 0x5A5A);
}

static void check_all(struct wl_checks *c)
{
    for (uint64_t i = 0; i < npages; i++)
        if (!wl_check(c, page_ok(region + i * WORDS, i, gen_of(i), 0), "page %llu is not generation %llu (written=%llu)",
                      (unsigned long long)i, (unsigned long long)gen_of(i), (unsigned long long)written))
            return;
    for (uint64_t i = 0; i < churn_len / PAGE; i++)
        if (!wl_check(c, page_ok(churn + i * WORDS, i, churns, 0x5A5A), "churn page %llu differs (churn=%llu)",
                      (unsigned long long)i, (unsigned long long)churns))
            return;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: dirtier CTLDIR [MIB [RATE_MIB_S]]");
    const char *dir = argv[1];
    const uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 64;
    const double rate = argc > 3 ? strtod(argv[3], NULL) : 10.0; /* MiB/s */
    const int do_churn = !(argc > 4 && strcmp(argv[4], "nochurn") == 0);
    char hold[4096];
    snprintf(hold, sizeof hold, "%s/hold", dir);
    npages = mib * 256;
    if (npages == 0)
        wl_die("MIB must be at least 1");
    region = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        wl_die("mmap");
    for (uint64_t i = 0; i < npages; i++)
        fill(region + i * WORDS, i, 0, 0);
    remap_churn();
    const double pages_per_ns = rate * 256.0 / 1e9;
    const double cap = rate * 256.0 * 0.05 + 1;
    double due = 0;
    uint64_t last = wl_now_ns(), last_churn = last, lastgap = 0, maxgap = 0;
    char buf[128];
    wl_ready(dir);
    for (;;) {
        const uint64_t now = wl_now_ns();
        if (now - last > 10000000ull)
            lastgap = now - last;
        if (now - last > maxgap)
            maxgap = now - last;
        due += (double)(now - last) * pages_per_ns;
        if (due > cap)
            due = cap;
        last = now;
        uint64_t since_look = 0;
        while (due >= 1) {
            if (since_look++ % 64 == 0 && access(hold, F_OK) == 0) {
                due = 0;
                break;
            }
            const uint64_t i = written % npages;
            fill(region + i * WORDS, i, written / npages + 1, 0);
            written++;
            due -= 1;
        }
        if (do_churn && now - last_churn >= 100000000ull) {
            remap_churn();
            last_churn = now;
        }
        int req = wl_poll_verify(dir);
        if (req != WL_VERIFY_NONE) {
            struct wl_checks c;
            wl_checks_init(&c);
            check_all(&c);
            snprintf(buf, sizeof buf, "written=%llu churn=%llu lastgap_ms=%.1f maxgap_ms=%.1f",
                     (unsigned long long)written, (unsigned long long)churns, (double)lastgap / 1e6,
                     (double)maxgap / 1e6);
            maxgap = 0;
            int ok = wl_report(dir, &c, buf);
            if (req == WL_VERIFY_EXIT)
                exit(ok ? 0 : 1);
        }
        wl_sleep_ms(2);
    }
}
