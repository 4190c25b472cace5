/* Shared control protocol for cryo end-to-end test workloads.
 *
 * argv[1] is a control directory.  A workload:
 *   1. creates its state,
 *   2. writes <ctl>/ready atomically (ready.tmp + rename) containing its pid,
 *   3. polls every ~10 ms for <ctl>/verify.  When it appears the workload
 *      deletes it, checks ALL of its state and writes <ctl>/result atomically:
 *        "OK <summary>"  or  "FAIL <what differed, expected and actual>".
 *      If the content of `verify` was "exit" it then exits 0 (OK) / 1 (FAIL),
 *      otherwise it keeps running.
 *
 * Everything here is static inline so each workload is a single C file.
 * No pipes or sockets are used on purpose (cryo does not support them yet).
 */
#ifndef CRYO_WL_COMMON_H
#define CRYO_WL_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WL_PATH_MAX 4096
#define WL_MSG_MAX 2048

/* Print a message to stderr and exit with status 2 (setup failure). */
static inline void wl_die(const char *fmt, ...)
{
    va_list ap;
    int saved = errno;
    fprintf(stderr, "workload: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (errno %d: %s)\n", saved, strerror(saved));
    fflush(stderr);
    exit(2);
}

static inline void wl_path(char *out, size_t outsz, const char *dir, const char *name)
{
    int n = snprintf(out, outsz, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outsz) {
        errno = ENAMETOOLONG;
        wl_die("path too long: %s/%s", dir, name);
    }
}

/* write(2) the whole buffer, retrying on EINTR and short writes. */
static inline int wl_write_all(int fd, const void *buf, size_t len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int wl_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* pread(2) exactly len bytes; returns bytes read (< len only at EOF) or -1. */
static inline ssize_t wl_pread_full(int fd, void *buf, size_t len, off_t off)
{
    char *p = (char *)buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, p + got, len - got, off + (off_t)got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Atomically create <dir>/<name> with the given content (tmp + fsync + rename). */
static inline void wl_write_file_atomic(const char *dir, const char *name, const char *content)
{
    char tmp[WL_PATH_MAX], dst[WL_PATH_MAX], tname[256];
    snprintf(tname, sizeof tname, "%s.tmp", name);
    wl_path(tmp, sizeof tmp, dir, tname);
    wl_path(dst, sizeof dst, dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        wl_die("open %s", tmp);
    if (wl_write_all(fd, content, strlen(content)) < 0)
        wl_die("write %s", tmp);
    if (fsync(fd) < 0)
        wl_die("fsync %s", tmp);
    if (close(fd) < 0)
        wl_die("close %s", tmp);
    if (rename(tmp, dst) < 0)
        wl_die("rename %s -> %s", tmp, dst);
}

static inline pid_t wl_getpid(void)
{
    return (pid_t)syscall(SYS_getpid); /* never a cached value */
}

static inline void wl_ready(const char *dir)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", (int)wl_getpid());
    wl_write_file_atomic(dir, "ready", buf);
}

/* Sleep for ms milliseconds, resuming after signal interruptions. */
static inline void wl_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline uint64_t wl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

enum wl_verify_req { WL_VERIFY_NONE = 0, WL_VERIFY_CHECK = 1, WL_VERIFY_EXIT = 2 };

/* Non-blocking check for <dir>/verify.  If present: read its content, delete
 * it and return WL_VERIFY_EXIT when the content is "exit", else
 * WL_VERIFY_CHECK.  Returns WL_VERIFY_NONE when there is no request. */
static inline int wl_poll_verify(const char *dir)
{
    char path[WL_PATH_MAX], buf[64];
    wl_path(path, sizeof path, dir, "verify");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == EINTR)
            return WL_VERIFY_NONE;
        wl_die("open %s", path);
    }
    ssize_t n = wl_pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (unlink(path) < 0 && errno != ENOENT)
        wl_die("unlink %s", path);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    /* strip trailing whitespace */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r' ||
                     buf[n - 1] == '\t'))
        buf[--n] = '\0';
    return strcmp(buf, "exit") == 0 ? WL_VERIFY_EXIT : WL_VERIFY_CHECK;
}

/* ---- check accumulator ------------------------------------------------- */

struct wl_checks {
    int total;      /* checks performed */
    int failed;     /* checks that failed */
    size_t len;     /* bytes used in msg */
    char msg[WL_MSG_MAX];
};

static inline void wl_checks_init(struct wl_checks *c)
{
    c->total = 0;
    c->failed = 0;
    c->len = 0;
    c->msg[0] = '\0';
}

/* Record one check.  On failure the formatted reason (which should contain
 * the expected and the actual value) is appended to the FAIL message. */
__attribute__((format(printf, 3, 4))) static inline int
wl_check(struct wl_checks *c, int ok, const char *fmt, ...)
{
    c->total++;
    if (ok)
        return 1;
    c->failed++;
    if (c->failed > 8)
        return 0; /* keep the line short; the count is reported */
    if (c->len > 0 && c->len + 2 < sizeof c->msg) {
        memcpy(c->msg + c->len, "; ", 3);
        c->len += 2;
    }
    if (c->len + 1 < sizeof c->msg) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->msg + c->len, sizeof c->msg - c->len, fmt, ap);
        va_end(ap);
        if (n > 0) {
            c->len += (size_t)n;
            if (c->len >= sizeof c->msg)
                c->len = sizeof c->msg - 1;
        }
    }
    return 0;
}

/* Write <dir>/result: "OK <summary>" or "FAIL <reasons>" (single line).
 * Returns 1 when all checks passed. */
static inline int wl_report(const char *dir, const struct wl_checks *c, const char *summary)
{
    char line[WL_MSG_MAX + 512];
    if (c->failed == 0) {
        snprintf(line, sizeof line, "OK %s\n", summary);
    } else {
        snprintf(line, sizeof line, "FAIL %d of %d checks failed: %s%s\n", c->failed, c->total,
                 c->msg, c->failed > 8 ? "; ..." : "");
    }
    /* the result is a single line: flatten any newline in the reasons */
    for (char *p = line; *p && p[1]; p++)
        if (*p == '\n')
            *p = ' ';
    wl_write_file_atomic(dir, "result", line);
    return c->failed == 0;
}

/* The verify loop of a workload whose state needs no ticking: polls for
 * <dir>/verify every 10 ms, runs check(c, exiting, arg) (exiting: the request
 * was "exit", the workload may tear down what it made), writes the result
 * with `summary` and, on "exit", exits 0 (OK) or 1. Never returns. */
typedef void (*wl_check_fn)(struct wl_checks *c, int exiting, void *arg);

static inline __attribute__((noreturn)) void wl_serve(const char *dir, wl_check_fn check, void *arg,
                                                      const char *summary)
{
    for (;;) {
        int req = wl_poll_verify(dir);
        if (req == WL_VERIFY_NONE) {
            wl_sleep_ms(10);
            continue;
        }
        struct wl_checks c;
        wl_checks_init(&c);
        check(&c, req == WL_VERIFY_EXIT, arg);
        int ok = wl_report(dir, &c, summary);
        if (req == WL_VERIFY_EXIT)
            exit(ok ? 0 : 1);
    }
}

/* Deterministic 64-bit pattern: a splitmix64 hash of (seed, index). */
static inline uint64_t wl_pat(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ULL + i + 0x632BE59BD9B4E019ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline void wl_fill(void *buf, size_t bytes, uint64_t seed)
{
    uint64_t *p = (uint64_t *)buf;
    for (size_t i = 0; i < bytes / 8; i++)
        p[i] = wl_pat(seed, i);
    unsigned char *tail = (unsigned char *)buf + (bytes / 8) * 8;
    for (size_t i = 0; i < bytes % 8; i++)
        tail[i] = (unsigned char)wl_pat(seed, bytes / 8 + i);
}

/* Returns the byte offset of the first mismatch, or -1 if buf matches. */
static inline long wl_first_mismatch(const void *buf, size_t bytes, uint64_t seed)
{
    const uint64_t *p = (const uint64_t *)buf;
    for (size_t i = 0; i < bytes / 8; i++)
        if (p[i] != wl_pat(seed, i))
            return (long)(i * 8);
    const unsigned char *tail = (const unsigned char *)buf + (bytes / 8) * 8;
    for (size_t i = 0; i < bytes % 8; i++)
        if (tail[i] != (unsigned char)wl_pat(seed, bytes / 8 + i))
            return (long)((bytes / 8) * 8 + i);
    return -1;
}

/* Check that buf holds the pattern for seed; on mismatch report where. */
static inline int wl_check_pattern(struct wl_checks *c, const char *what, const void *buf,
                                   size_t bytes, uint64_t seed)
{
    long off = wl_first_mismatch(buf, bytes, seed);
    if (off < 0)
        return wl_check(c, 1, "%s", what);
    size_t word = (size_t)off / 8;
    if (word < bytes / 8)
        return wl_check(c, 0, "%s: byte offset %ld: expected 0x%016llx actual 0x%016llx", what,
                        off, (unsigned long long)wl_pat(seed, word),
                        (unsigned long long)((const uint64_t *)buf)[word]);
    return wl_check(c, 0, "%s: tail byte offset %ld differs", what, off);
}

#endif /* CRYO_WL_COMMON_H */
