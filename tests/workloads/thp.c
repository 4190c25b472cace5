/* thp: private anonymous memory backed by transparent huge pages, and memory
 * that is not, each region checked by the process itself after a restore:
 * its bytes, its VmFlags and its AnonHugePages (/proc/self/smaps) equal to
 * what they were when it became ready.
 *
 * Usage: thp CTL_DIR
 *
 * Regions (each its own VMA, written with a pattern, page by page):
 *   H  8 MiB at a 2 MiB boundary, MADV_HUGEPAGE ("hg") before it is written
 *   U  9 MiB starting 1 MiB past a 2 MiB boundary, MADV_HUGEPAGE: its 4
 *      whole 2 MiB ranges huge, its first and last MiB small pages
 *   C  8 MiB at a 2 MiB boundary, written in small pages, then MADV_COLLAPSE
 *      (huge pages without "hg")
 *   M  8 MiB at a 2 MiB boundary, small pages, MADV_COLLAPSE of its second
 *      2 MiB only (2048 kB huge)
 *   P  8 MiB at a 2 MiB boundary, small pages, no advice
 * Guard pages (PROT_NONE) between them keep the VMAs apart.
 *
 * CTL_DIR/layout: "thp_enabled <the sysfs line>" and one line per region,
 * "<name> <AnonHugePages kB>" as it was at ready. H, U and C lack "nh"; C, M
 * and P lack "hg", H and U have it.
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "wl_common.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define PAGE 4096UL
#define MIB (1UL << 20)
#define HUGE (2 * MIB)

struct region {
    const char *name;
    char *at;
    size_t len;
    long huge_kb; /* AnonHugePages at ready */
};

static struct region regions[] = {
    {"H", NULL, 8 * MIB, 0}, {"U", NULL, 9 * MIB, 0}, {"C", NULL, 8 * MIB, 0},
    {"M", NULL, 8 * MIB, 0}, {"P", NULL, 8 * MIB, 0},
};
#define NREG (sizeof regions / sizeof regions[0])

/* The smaps field `key` (kB) and the VmFlags (" rd wr ... ") of the VMA at addr. */
static int smaps_of(const void *addr, const char *key, long *kb, char *flags, size_t n)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0, found = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (unsigned long)addr >= lo && (unsigned long)addr < hi;
            continue;
        }
        if (!in)
            continue;
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            *kb = strtol(line + klen + 1, NULL, 10);
        if (strncmp(line, "VmFlags:", 8) == 0) {
            line[strcspn(line, "\n")] = ' ';
            snprintf(flags, n, "%s", line + 8);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int has_flag(const char *flags, const char *f)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s ", f);
    return strstr(flags, pat) != NULL;
}

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    for (size_t i = 0; i < NREG; i++) {
        const struct region *r = &regions[i];
        char what[64], flags[256] = "";
        long kb = -1;
        snprintf(what, sizeof what, "region %s (%zu MiB at %p)", r->name, r->len / MIB, (void *)r->at);
        for (size_t p = 0; p < r->len / PAGE; p++) {
            char pw[96];
            snprintf(pw, sizeof pw, "%s page %zu", what, p);
            if (!wl_check_pattern(c, pw, r->at + p * PAGE, PAGE, i * 100000 + p))
                break;
        }
        if (!wl_check(c, smaps_of(r->at, "AnonHugePages", &kb, flags, sizeof flags) == 0, "%s: not in smaps", what))
            continue;
        wl_check(c, kb == r->huge_kb, "%s: AnonHugePages %ld kB, expected %ld kB (as before the dump)", what, kb,
                 r->huge_kb);
        const int hg = r->name[0] == 'H' || r->name[0] == 'U';
        wl_check(c, has_flag(flags, "hg") == hg, "%s: VmFlags%s%s \"hg\"", what, flags, hg ? "lacks" : "has");
        wl_check(c, !has_flag(flags, "nh"), "%s: VmFlags%shas \"nh\"", what, flags);
    }
}

/* `len` bytes whose start is `offset` past a 2 MiB boundary, between guard pages. */
static char *map_at_offset(size_t len, size_t offset)
{
    char *res = mmap(NULL, len + 2 * HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        wl_die("mmap reservation");
    char *at = (char *)((((uintptr_t)res + PAGE + HUGE - 1) & ~(HUGE - 1)) + offset);
    if (mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
        wl_die("mmap of %zu bytes", len);
    return at;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: thp CTL_DIR\n");
        return 2;
    }
    const char *ctl = argv[1];
    for (size_t i = 0; i < NREG; i++) {
        struct region *r = &regions[i];
        r->at = map_at_offset(r->len, r->name[0] == 'U' ? MIB : 0);
        if ((r->name[0] == 'H' || r->name[0] == 'U') && madvise(r->at, r->len, MADV_HUGEPAGE) != 0)
            wl_die("MADV_HUGEPAGE");
        for (size_t p = 0; p < r->len / PAGE; p++)
            wl_fill(r->at + p * PAGE, PAGE, i * 100000 + p);
        /* EINVAL (no THP here) or EAGAIN/ENOMEM: the region stays small
         * pages, which the layout says and the test sees. */
        if (r->name[0] == 'C')
            (void)madvise(r->at, r->len, MADV_COLLAPSE);
        if (r->name[0] == 'M')
            (void)madvise(r->at + HUGE, HUGE, MADV_COLLAPSE);
    }
    char text[256] = "", line[128], layout[1024];
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(text, sizeof text, f))
            text[0] = '\0';
        fclose(f);
    }
    text[strcspn(text, "\n")] = '\0';
    snprintf(layout, sizeof layout, "thp_enabled %s\n", text[0] ? text : "(none)");
    for (size_t i = 0; i < NREG; i++) {
        char flags[256];
        if (smaps_of(regions[i].at, "AnonHugePages", &regions[i].huge_kb, flags, sizeof flags) != 0)
            wl_die("region %s not in smaps", regions[i].name);
        snprintf(line, sizeof line, "%s %ld\n", regions[i].name, regions[i].huge_kb);
        strncat(layout, line, sizeof layout - strlen(layout) - 1);
    }
    wl_write_file_atomic(ctl, "layout", layout);
    wl_ready(ctl);
    wl_serve(ctl, check, NULL, "5 regions: bytes, VmFlags and AnonHugePages as before");
}
