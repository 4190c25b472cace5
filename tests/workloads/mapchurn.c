/* Mappings changed continuously, for the copy-on-write leave-running dump
 * (tests/e2e/test_cowchurn.py).
 *
 * Usage: mapchurn CTLDIR MODE   (MODE: unmap, dontneed, remap, swap)
 *
 * Eight 1 MiB slots of private anonymous memory, then a 48 MiB ballast below
 * them (mapped after them, so at lower addresses: a copy in address order
 * reaches the slots last). Every millisecond one slot is changed in turn,
 * by MODE:
 *   unmap     munmap, mmap again, filled with a new generation;
 *   dontneed  madvise(MADV_DONTNEED), filled with a new generation;
 *   remap     mremap(MREMAP_MAYMOVE | MREMAP_FIXED) onto its spare (a 1 MiB
 *             PROT_NONE reservation), the old place reserved as the next
 *             spare, then filled with a new generation;
 *   swap      two slots (i, i xor 1) trade places by three mremaps (through
 *             the first one's spare), then both are filled with a new
 *             generation: protected pages land where other protected
 *             pages were.
 * A slot's generation is recorded once its fill is complete, so at any
 * instant each slot holds its recorded generation, or is being changed (a
 * restored copy finishes that change before it looks at anything). Verify
 * checks the ballast and every slot. While CTLDIR/hold exists it changes
 * nothing: a restored copy then verifies the image's own pages.
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "wl_common.h"

#define SLOTS 8
#define SLOT (1u << 20)
#define BALLAST (48u << 20)

static char *slot[SLOTS], *spare[SLOTS], *ballast;
static uint64_t gen[SLOTS], ops;

static void check_all(struct wl_checks *c)
{
    wl_check_pattern(c, "ballast", ballast, BALLAST, 77);
    for (int i = 0; i < SLOTS; i++) {
        char what[64];
        snprintf(what, sizeof what, "slot %d generation %llu", i, (unsigned long long)gen[i]);
        wl_check_pattern(c, what, slot[i], SLOT, 1000 + gen[i] * SLOTS + (uint64_t)i);
    }
}

static char *map_at(void *hint, int prot)
{
    char *p = mmap(hint, SLOT, prot, MAP_PRIVATE | MAP_ANONYMOUS | (hint ? MAP_FIXED_NOREPLACE : 0), -1, 0);
    if (p == MAP_FAILED || (hint && p != hint))
        wl_die("mmap");
    return p;
}

static char *move(char *from, char *to)
{
    char *p = mremap(from, SLOT, SLOT, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (p == MAP_FAILED)
        wl_die("mremap");
    return p;
}

static void swap_slots(int i)
{
    const int j = i ^ 1;
    char *a = slot[i], *b = slot[j], *t = spare[i];
    move(a, t);
    move(b, a);
    move(t, b);
    spare[i] = map_at(t, PROT_NONE);
    slot[i] = b;
    slot[j] = a;
    for (int k = 0; k < 2; k++) {
        const int s = k ? j : i;
        const uint64_t g = gen[s] + 1;
        wl_fill(slot[s], SLOT, 1000 + g * SLOTS + (uint64_t)s);
        gen[s] = g;
    }
}

static void change(int i, int mode)
{
    if (mode == 3) {
        swap_slots(i);
        return;
    }
    const uint64_t g = gen[i] + 1;
    if (mode == 0) {
        if (munmap(slot[i], SLOT) != 0)
            wl_die("munmap");
        slot[i] = map_at(slot[i], PROT_READ | PROT_WRITE);
    } else if (mode == 1) {
        if (madvise(slot[i], SLOT, MADV_DONTNEED) != 0)
            wl_die("madvise");
    } else {
        char *to = mremap(slot[i], SLOT, SLOT, MREMAP_MAYMOVE | MREMAP_FIXED, spare[i]);
        if (to == MAP_FAILED)
            wl_die("mremap");
        spare[i] = map_at(slot[i], PROT_NONE);
        slot[i] = to;
    }
    wl_fill(slot[i], SLOT, 1000 + g * SLOTS + (uint64_t)i);
    gen[i] = g;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        wl_die("usage: mapchurn CTLDIR unmap|dontneed|remap|swap");
    const char *dir = argv[1];
    const int mode = strcmp(argv[2], "unmap") == 0 ? 0 : strcmp(argv[2], "dontneed") == 0 ? 1
                     : strcmp(argv[2], "remap") == 0 ? 2 : strcmp(argv[2], "swap") == 0 ? 3 : -1;
    if (mode < 0)
        wl_die("unknown mode %s", argv[2]);
    char hold[4096];
    wl_path(hold, sizeof hold, dir, "hold");
    for (int i = 0; i < SLOTS; i++) {
        slot[i] = map_at(NULL, PROT_READ | PROT_WRITE);
        spare[i] = map_at(NULL, PROT_NONE);
        wl_fill(slot[i], SLOT, 1000 + (uint64_t)i);
    }
    ballast = mmap(NULL, BALLAST, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ballast == MAP_FAILED)
        wl_die("mmap ballast");
    wl_fill(ballast, BALLAST, 77);
    char buf[64];
    wl_ready(dir);
    for (;;) {
        if (access(hold, F_OK) != 0) {
            change((int)(ops % SLOTS), mode);
            ops++;
        }
        int req = wl_poll_verify(dir);
        if (req != WL_VERIFY_NONE) {
            struct wl_checks c;
            wl_checks_init(&c);
            check_all(&c);
            snprintf(buf, sizeof buf, "ops=%llu", (unsigned long long)ops);
            int ok = wl_report(dir, &c, buf);
            if (req == WL_VERIFY_EXIT)
                exit(ok ? 0 : 1);
        }
        wl_sleep_ms(1);
    }
}
