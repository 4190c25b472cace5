/* baseline_io: the plain-I/O baselines cryo's benchmarks compare against.
 *
 * Not part of the CMake build: bench_dump.py / bench_restore.py compile it on
 * demand (cc -O2) into their temporary directory.
 *
 *   baseline_io write FILE BYTES [--no-fsync] [--chunk-mib N] [--wait-go]
 *       Fill an in-memory buffer of BYTES (untimed, every page touched), then
 *       time: open(FILE, O_CREAT|O_TRUNC) + write() in N-MiB calls (default 64)
 *       + fsync(FILE) + fsync(its directory) + close.  --no-fsync leaves out
 *       both fsyncs (data only reaches the page cache).  --wait-go: after the
 *       fill print "filled" and wait for one byte on stdin before timing (so
 *       the caller can prepare the directory exactly as it does for cryo).
 *
 *   baseline_io read FILE [--chunk-mib N]
 *       mmap a fresh private anonymous buffer of the file's size (untouched,
 *       so the read faults in fresh pages as a restore must), then time:
 *       open(FILE) + read() in N-MiB calls into the buffer + close.  Before
 *       timing it reports which fraction of FILE is in the page cache
 *       (mincore), so the caller can check the read really is a page-cache copy.
 *
 *   baseline_io warm MIB
 *       Touch MIB MiB of fresh anonymous memory (transparent huge pages where
 *       possible) and exit, giving the memory back.  On a VM whose balloon
 *       reports free pages to the host (firecracker, free page reporting), memory
 *       freed a few seconds ago costs a host fault per page when it is next
 *       used; warming right before a timed step makes cryo and the baselines
 *       start from the same, recently used, free memory.
 *
 *   baseline_io rusage OUT CMD [ARG...]
 *       fork + exec CMD (killed if baseline_io dies), wait4 for it, write
 *       "maxrss_kib=N" (its ru_maxrss) to the file OUT and exit with its status
 *       (128 + signal if it was killed).  A child forked straight from Python
 *       would count the interpreter's resident memory in its ru_maxrss (the
 *       high-water mark survives exec), so the benchmarks measure cryo's peak
 *       RSS through this small process.
 *
 * Prints one line of key=value pairs, e.g. "seconds=0.412345 bytes=1073741824".
 * Exit status 0 on success, 1 on an I/O error, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *what, const char *path)
{
    fprintf(stderr, "baseline_io: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: baseline_io write FILE BYTES [--no-fsync] [--chunk-mib N] [--wait-go]\n"
            "       baseline_io read FILE [--chunk-mib N]\n"
            "       baseline_io warm MIB\n"
            "       baseline_io rusage OUT CMD [ARG...]\n");
    exit(2);
}

static void *fresh_buffer(size_t bytes)
{
    void *m = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        fail("mmap", "buffer");
    return m;
}

static int do_write(const char *path, size_t bytes, int do_fsync, size_t chunk, int wait_go)
{
    uint64_t *buf = fresh_buffer(bytes);
    for (size_t i = 0; i < bytes / 8; i++)
        buf[i] = (i * 0x9E3779B97F4A7C15ULL) | 1;
    if (wait_go) {
        printf("filled\n");
        fflush(stdout);
        char go;
        ssize_t n;
        while ((n = read(0, &go, 1)) < 0 && errno == EINTR) {
        }
        if (n != 1) {
            fprintf(stderr, "baseline_io: no go byte on stdin\n");
            return 1;
        }
    }

    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    const char *dir = dirname(dirbuf);

    double t0 = now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fail("open", path);
    const char *p = (const char *)buf;
    size_t left = bytes;
    while (left > 0) {
        ssize_t n = write(fd, p, left < chunk ? left : chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("write", path);
        }
        p += n;
        left -= (size_t)n;
    }
    double t_write = now();
    if (do_fsync) {
        if (fsync(fd) != 0)
            fail("fsync", path);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            fail("open", dir);
        if (fsync(dfd) != 0)
            fail("fsync", dir);
        close(dfd);
    }
    if (close(fd) != 0)
        fail("close", path);
    double t1 = now();
    printf("seconds=%.6f write_seconds=%.6f bytes=%zu fsync=%d chunk=%zu\n", t1 - t0,
           t_write - t0, bytes, do_fsync, chunk);
    return 0;
}

static int do_warm(size_t mib)
{
    size_t bytes = mib << 20;
    double t0 = now();
    char *m = fresh_buffer(bytes);
    (void)madvise(m, bytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < bytes; i += 4096)
        m[i] = 1;
    munmap(m, bytes);
    printf("seconds=%.6f bytes=%zu\n", now() - t0, bytes);
    return 0;
}

static int do_read(const char *path, size_t chunk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("open", path);
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail("stat", path);
    size_t bytes = (size_t)st.st_size;

    /* Page-cache residency of the file (untimed). */
    double resident = 1.0;
    if (bytes) {
        void *fm = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
        if (fm == MAP_FAILED)
            fail("mmap", path);
        size_t pages = (bytes + 4095) / 4096;
        unsigned char *vec = malloc(pages);
        if (!vec)
            fail("malloc", "mincore vector");
        if (mincore(fm, bytes, vec) != 0)
            fail("mincore", path);
        size_t in = 0;
        for (size_t i = 0; i < pages; i++)
            in += vec[i] & 1;
        resident = (double)in / (double)pages;
        free(vec);
        munmap(fm, bytes);
    }
    close(fd);

    char *buf = fresh_buffer(bytes);
    double t0 = now();
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("open", path);
    size_t off = 0;
    while (off < bytes) {
        size_t want = bytes - off < chunk ? bytes - off : chunk;
        ssize_t n = read(fd, buf + off, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("read", path);
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    double t1 = now();
    if (off != bytes) {
        fprintf(stderr, "baseline_io: short read of %s: %zu of %zu bytes\n", path, off, bytes);
        return 1;
    }
    /* Keep the compiler honest: fold a few bytes of what was read. */
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i += 1 << 20)
        sum += (unsigned char)buf[i];
    printf("seconds=%.6f bytes=%zu resident=%.4f chunk=%zu sum=%u\n", t1 - t0, bytes, resident,
           chunk, sum);
    return 0;
}

static int do_rusage(const char *out, char **argv)
{
    pid_t pid = fork();
    if (pid < 0)
        fail("fork", argv[0]);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv);
        fail("exec", argv[0]);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR)
            fail("wait4", argv[0]);
    FILE *f = fopen(out, "w");
    const double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                       ru.ru_stime.tv_usec / 1e6;
    if (!f || fprintf(f, "maxrss_kib=%ld\ncpu_s=%.6f\n", ru.ru_maxrss, cpu) < 0 || fclose(f) != 0)
        fail("writing", out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    const char *mode = argv[1], *path = argv[2];
    if (strcmp(mode, "warm") == 0)
        return do_warm(strtoull(path, NULL, 10));
    if (strcmp(mode, "rusage") == 0) {
        if (argc < 4)
            usage();
        return do_rusage(path, argv + 3);
    }
    int i = 3, do_fsync = 1, wait_go = 0;
    size_t bytes = 0, chunk = 64UL << 20;
    if (strcmp(mode, "write") == 0) {
        if (argc < 4)
            usage();
        char *end;
        errno = 0;
        bytes = strtoull(argv[3], &end, 10);
        if (errno || *end)
            usage();
        i = 4;
    } else if (strcmp(mode, "read") != 0) {
        usage();
    }
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--no-fsync") == 0) {
            do_fsync = 0;
        } else if (strcmp(argv[i], "--wait-go") == 0) {
            wait_go = 1;
        } else if (strcmp(argv[i], "--chunk-mib") == 0 && i + 1 < argc) {
            chunk = strtoull(argv[++i], NULL, 10) << 20;
            if (chunk == 0)
                usage();
        } else {
            usage();
        }
    }
    return mode[0] == 'w' ? do_write(path, bytes, do_fsync, chunk, wait_go) : do_read(path, chunk);
}
