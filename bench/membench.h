/* membench.h: what the memory benchmark workloads (memtouch.c, memthreads.c)
 * share: the page pattern, the control files, the page check.  See
 * bench/README.md. */
#ifndef CRYO_BENCH_MEMBENCH_H
#define CRYO_BENCH_MEMBENCH_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))

static const char *g_ctl;            /* CTL_DIR */
static const char *g_prog = "bench"; /* for messages */

static void die(const char *what)
{
    int e = errno;
    fprintf(stderr, "%s: %s: %s\n", g_prog, what, strerror(e));
    exit(2);
}

static void ctl_path(char *out, size_t n, const char *name)
{
    int r = snprintf(out, n, "%s/%s", g_ctl, name);
    if (r < 0 || (size_t)r >= n) {
        errno = ENAMETOOLONG;
        die("control path");
    }
}

/* Word w of page p: never zero, different for every page and word. */
static inline uint64_t pattern(uint64_t p, uint64_t w)
{
    return (p * 0x9E3779B97F4A7C15ULL) ^ (w << 48) ^ 0xA5A5000000000001ULL;
}

/* Write CTL/name atomically (name.tmp + rename). */
static int write_ctl(const char *name, const char *text)
{
    char tmp[4096], dst[4096], tname[256];
    snprintf(tname, sizeof tname, "%s.tmp", name);
    ctl_path(tmp, sizeof tmp, tname);
    ctl_path(dst, sizeof dst, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0)
        return -1;
    return rename(tmp, dst);
}

/* Returns 1 if all pages hold the pattern; else 0 with a message in msg. */
static int check_pages(const uint64_t *mem, uint64_t pages, char *msg, size_t msgsz)
{
    for (uint64_t p = 0; p < pages; p++) {
        const uint64_t *pg = mem + p * WORDS_PER_PAGE;
        for (uint64_t w = 0; w < WORDS_PER_PAGE; w++) {
            uint64_t want = pattern(p, w);
            if (pg[w] != want) {
                snprintf(msg, msgsz,
                         "FAIL page %llu word %llu (addr %p): expected %#llx, actual %#llx\n",
                         (unsigned long long)p, (unsigned long long)w, (const void *)&pg[w],
                         (unsigned long long)want, (unsigned long long)pg[w]);
                return 0;
            }
        }
    }
    snprintf(msg, msgsz, "OK %llu pages\n", (unsigned long long)pages);
    return 1;
}

/* Parses MIB (0 .. 2^20) or exits 2. */
static uint64_t parse_mib(const char *arg)
{
    char *end;
    errno = 0;
    unsigned long long mib = strtoull(arg, &end, 10);
    if (errno || *end || end == arg || mib > (1ULL << 20)) {
        fprintf(stderr, "%s: bad MIB %s\n", g_prog, arg);
        exit(2);
    }
    return (uint64_t)mib;
}

/* Maps MIB MiB of private anonymous memory and writes the pattern to every
 * page (NULL for 0 MiB). With `huge` 1, the memory starts at a 2 MiB boundary
 * and is advised MADV_HUGEPAGE first; with 2, it is collapsed into huge pages
 * after it is written (MADV_COLLAPSE, no VmFlags "hg"): transparent huge
 * pages either way, where the system allows them. */
static inline uint64_t *map_and_fill_huge(uint64_t mib, uint64_t *pages_out, int huge)
{
    const uint64_t bytes = mib << 20;
    const uint64_t pages = bytes / PAGE;
    /* huge 3: shared anonymous memory (shmem); 4: the same in hugetlb pages
     * of 2 MiB (MAP_SHARED | MAP_HUGETLB; bytes a multiple of 2 MiB); 5: a
     * file of the hugetlbfs mount $MEMTOUCH_HUGETLBFS (memtouch.data),
     * mapped shared; 6: private anonymous hugetlb memory; 7: a hugetlb memfd
     * mapped private (every page then copied on write). */
    if (bytes && huge >= 5) {
        int fd = -1, flags = MAP_PRIVATE;
        if (huge == 5) {
            const char *dir = getenv("MEMTOUCH_HUGETLBFS");
            char path[4096];
            snprintf(path, sizeof path, "%s/memtouch.data", dir ? dir : "/nonexistent");
            fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            flags = MAP_SHARED;
        } else if (huge == 7) {
            fd = memfd_create("memtouch", MFD_HUGETLB | MFD_CLOEXEC);
        }
        if (huge != 6 && (fd < 0 || ftruncate(fd, (off_t)bytes) != 0))
            die("hugetlbfs file or memfd");
        char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, huge == 6 ? MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB : flags,
                       fd, 0);
        if (m == MAP_FAILED)
            die("mmap");
        if (fd >= 0)
            close(fd);
        uint64_t *hm = (uint64_t *)m;
        for (uint64_t p = 0; p < pages; p++)
            for (uint64_t w = 0; w < WORDS_PER_PAGE; w++)
                hm[p * WORDS_PER_PAGE + w] = pattern(p, w);
        *pages_out = pages;
        return hm;
    }
    const int shared = huge == 3 || huge == 4;
    const uint64_t pad = huge && !shared ? (2UL << 20) : 0;
    uint64_t *mem = NULL;
    if (bytes) {
        /* MAP_NORESERVE only to avoid overcommit surprises; every page gets written. */
        const int flags = shared ? MAP_SHARED | MAP_ANONYMOUS | (huge == 4 ? MAP_HUGETLB : MAP_NORESERVE)
                                 : MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
        char *m = mmap(NULL, bytes + pad, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (m == MAP_FAILED)
            die("mmap");
        if (pad) {
            char *at = (char *)(((uintptr_t)m + pad - 1) & ~(uintptr_t)(pad - 1));
            if (at > m)
                munmap(m, (size_t)(at - m));
            if (at + bytes < m + bytes + pad)
                munmap(at + bytes, (size_t)(m + bytes + pad - (at + bytes)));
            if (huge == 1 && madvise(at, bytes, MADV_HUGEPAGE) != 0)
                die("madvise MADV_HUGEPAGE");
            m = at;
        }
        mem = (uint64_t *)m;
        for (uint64_t p = 0; p < pages; p++) {
            uint64_t *pg = mem + p * WORDS_PER_PAGE;
            for (uint64_t w = 0; w < WORDS_PER_PAGE; w++)
                pg[w] = pattern(p, w);
        }
    }
    if (mem && huge == 2 && madvise(mem, bytes, 25 /* MADV_COLLAPSE */) != 0)
        die("madvise MADV_COLLAPSE");
    *pages_out = pages;
    return mem;
}

static inline uint64_t *map_and_fill(uint64_t mib, uint64_t *pages_out)
{
    return map_and_fill_huge(mib, pages_out, 0);
}

/* Waits (100 ms naps) for CTL/verify; removes it; returns 1 if it said "exit". */
static int wait_verify(void)
{
    char verify[4096];
    ctl_path(verify, sizeof verify, "verify");
    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        int fd = open(verify, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        char req[16] = {0};
        ssize_t n = read(fd, req, sizeof req - 1);
        close(fd);
        unlink(verify);
        return n >= 4 && strncmp(req, "exit", 4) == 0;
    }
}

#endif
