/* unlinked: files, directories and FIFOs whose name was deleted while the
 * tree holds them (tests/e2e/test_unlinked.py).
 *
 * Usage: unlinked CTL_DIR
 *
 * Everything is made in CTL_DIR, then its name removed:
 * - "dense": 1 MiB + 3 bytes of a known pattern, fd 40 O_RDWR at offset 12345,
 *   mode 0640, owner 1234:5678 (when root), fixed atime and mtime; fd 41 is a
 *   dup of it (shared offset), fd 42 a second description (O_RDONLY, offset 99);
 * - "sparse": 1 GiB with data at 0 (4 KiB), 100 MiB (64 KiB) and the last
 *   4 KiB only, fd 43 O_RDWR|O_APPEND;
 * - "empty": 0 bytes, fd 44 O_WRONLY;
 * - "shared-map": 3 pages mapped MAP_SHARED, its fd closed: mapped only;
 *   a child writes to it (the sharing of the mapping across processes);
 * - "private-map": 2 pages mapped MAP_PRIVATE, its first page then changed
 *   (copied on write), fd closed;
 * - "code": machine code (mov eax, N; ret) mapped PROT_EXEC, fd closed, and
 *   called: a deleted shared library / JIT file still executing;
 * - "shared-fd": fd 45, inherited by the child: on request the child writes
 *   one byte through it, which moves the parent's offset too;
 * - "gone": a directory, mode 0751, held as fd 46 and as the working
 *   directory, then removed (rmdir); "gone/inner" (a file in it, fd 47)
 *   deleted first;
 * - "fifo": a FIFO with bytes waiting, fd 48 O_RDWR|O_NONBLOCK and fd 49 a
 *   write end (O_WRONLY), then unlinked;
 * - "first" / "second": one file with two names; fd 50 opened as "first",
 *   which is then deleted: reopened through "second".
 * Verify: exact bytes and sizes, offsets, flags, holes still holes (SEEK_HOLE
 * and st_blocks), st_nlink 0, links "PATH (deleted)", mode, owner, times,
 * the mappings' bytes, the code still runs, the child's writes through the
 * shared fd and mapping arrive, the working directory is the directory of
 * fd 46, the FIFO's bytes (read, then written back), and fd 50 is the inode
 * of "second".
 * On "exit" every file is scribbled over first, so that a restore after it
 * (leave-running, rewind) shows the dumped state came from the image.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "wl_common.h"

#define DENSE_SIZE ((1 << 20) + 3)
#define SPARSE_SIZE (1ull << 30)
#define PAGE 4096
static const long long kAtime = 1600000000LL, kMtime = 1500000000LL;
static const char kFifoBytes[] = "bytes waiting in an unlinked FIFO";

static char ctl[WL_PATH_MAX];
static char *shared_map, *private_map;
static int (*code)(void);
static pid_t child;
static int is_root;

struct board {
    volatile long requests; /* parent -> child */
    volatile long done;     /* child -> parent */
};
static struct board *board;

static void mk(const char *name, char *out)
{
    wl_path(out, WL_PATH_MAX, ctl, name);
}

static int create_file(const char *name, int flags, mode_t mode)
{
    char p[WL_PATH_MAX];
    mk(name, p);
    int fd = open(p, flags | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        wl_die("create %s", p);
    return fd;
}

static void place(int fd, int at)
{
    if (dup2(fd, at) != at)
        wl_die("dup2 %d", at);
    close(fd);
}

static void rm(const char *name)
{
    char p[WL_PATH_MAX];
    mk(name, p);
    if (unlink(p) != 0)
        wl_die("unlink %s", p);
}

static void fill_sparse(int fd, uint64_t seed_base)
{
    static char buf[64 * 1024];
    wl_fill(buf, PAGE, seed_base + 1);
    wl_pwrite_all(fd, buf, PAGE, 0);
    wl_fill(buf, sizeof buf, seed_base + 2);
    wl_pwrite_all(fd, buf, sizeof buf, 100 << 20);
    wl_fill(buf, PAGE, seed_base + 3);
    wl_pwrite_all(fd, buf, PAGE, (off_t)(SPARSE_SIZE - PAGE));
}

static void child_loop(struct board *b)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    long seen = b->requests;
    for (;;) {
        if (b->requests != seen) {
            seen = b->requests;
            /* one byte through the inherited description, one into the mapping */
            char c = (char)('a' + seen % 26);
            if (write(45, &c, 1) != 1)
                _exit(3);
            shared_map[PAGE + seen % PAGE] = c;
            b->done = seen;
        }
        wl_sleep_ms(5);
    }
}

static void setup(void)
{
    is_root = geteuid() == 0;
    static char buf[DENSE_SIZE];
    /* dense */
    int fd = create_file("dense", O_RDWR, 0600);
    wl_fill(buf, DENSE_SIZE, 11);
    if (wl_write_all(fd, buf, DENSE_SIZE) != 0)
        wl_die("write dense");
    if (fchmod(fd, 0640) != 0 || (is_root && fchown(fd, 1234, 5678) != 0))
        wl_die("chmod/chown dense");
    struct timespec ts[2] = {{kAtime, 123}, {kMtime, 456789}};
    if (futimens(fd, ts) != 0)
        wl_die("futimens");
    char p[WL_PATH_MAX];
    mk("dense", p);
    int second = open(p, O_RDONLY);
    if (second < 0)
        wl_die("open dense again");
    place(fd, 40);
    if (dup2(40, 41) != 41)
        wl_die("dup2 41");
    place(second, 42);
    lseek(40, 12345, SEEK_SET);
    lseek(42, 99, SEEK_SET);
    rm("dense");
    /* sparse */
    fd = create_file("sparse", O_RDWR, 0600);
    if (ftruncate(fd, (off_t)SPARSE_SIZE) != 0)
        wl_die("ftruncate sparse");
    fill_sparse(fd, 20);
    close(fd);
    mk("sparse", p);
    fd = open(p, O_RDWR | O_APPEND);
    place(fd, 43);
    rm("sparse");
    /* empty */
    place(create_file("empty", O_WRONLY, 0604), 44);
    rm("empty");
    /* shared-map */
    fd = create_file("shared-map", O_RDWR, 0600);
    if (ftruncate(fd, 3 * PAGE) != 0)
        wl_die("ftruncate shared-map");
    shared_map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared_map == MAP_FAILED)
        wl_die("mmap shared-map");
    wl_fill(shared_map, PAGE, 30);
    close(fd);
    rm("shared-map");
    /* private-map */
    fd = create_file("private-map", O_RDWR, 0600);
    wl_fill(buf, 2 * PAGE, 40);
    wl_write_all(fd, buf, 2 * PAGE);
    private_map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (private_map == MAP_FAILED)
        wl_die("mmap private-map");
    wl_fill(private_map, PAGE, 41); /* copied on write: the file keeps seed 40 */
    close(fd);
    rm("private-map");
    /* code: mov eax, 0x2a2a; ret */
    fd = create_file("code", O_RDWR, 0700);
    static const unsigned char kCode[] = {0xb8, 0x2a, 0x2a, 0x00, 0x00, 0xc3};
    wl_write_all(fd, kCode, sizeof kCode);
    void *c = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (c == MAP_FAILED)
        wl_die("mmap code");
    code = (int (*)(void))c;
    close(fd);
    rm("code");
    /* shared-fd */
    place(create_file("shared-fd", O_RDWR, 0600), 45);
    rm("shared-fd");
    /* gone, gone/inner */
    mk("gone", p);
    if (mkdir(p, 0700) != 0 || chmod(p, 0751) != 0)
        wl_die("mkdir gone");
    place(open(p, O_RDONLY | O_DIRECTORY), 46);
    if (chdir(p) != 0)
        wl_die("chdir gone");
    fd = open("inner", O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || wl_write_all(fd, "inner", 5) != 0)
        wl_die("inner");
    place(fd, 47);
    if (unlink("inner") != 0 || rmdir(p) != 0)
        wl_die("rmdir gone");
    /* fifo */
    mk("fifo", p);
    if (mkfifo(p, 0620) != 0)
        wl_die("mkfifo");
    chmod(p, 0620);
    place(open(p, O_RDWR | O_NONBLOCK), 48);
    place(open(p, O_WRONLY), 49);
    wl_write_all(49, kFifoBytes, sizeof kFifoBytes - 1);
    rm("fifo");
    /* first / second */
    fd = create_file("first", O_RDWR, 0600);
    wl_write_all(fd, "two names", 9);
    char q[WL_PATH_MAX];
    mk("first", p);
    mk("second", q);
    if (link(p, q) != 0)
        wl_die("link");
    place(fd, 50);
    lseek(50, 4, SEEK_SET);
    rm("first");

    board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        wl_die("mmap board");
    child = fork();
    if (child < 0)
        wl_die("fork");
    if (child == 0)
        child_loop(board);
    char line[64];
    snprintf(line, sizeof line, "child %d\n", child);
    wl_write_file_atomic(ctl, "objects", line);
}

static void check_deleted_link(struct wl_checks *c, int fd, const char *name)
{
    char proc[64], link[WL_PATH_MAX], want[WL_PATH_MAX + 16];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = '\0';
    snprintf(want, sizeof want, "%s/%s (deleted)", ctl, name);
    wl_check(c, strcmp(link, want) == 0, "fd %d links to \"%s\", expected \"%s\"", fd, link, want);
}

static void check_stat(struct wl_checks *c, int fd, const char *what, mode_t mode, off_t size, long nlink)
{
    struct stat st;
    if (!wl_check(c, fstat(fd, &st) == 0, "fstat %s", what))
        return;
    wl_check(c, (long)st.st_nlink == nlink, "%s: st_nlink %ld, expected %ld", what, (long)st.st_nlink, nlink);
    wl_check(c, (st.st_mode & 07777) == mode, "%s: mode %o, expected %o", what, st.st_mode & 07777, mode);
    if (size >= 0)
        wl_check(c, st.st_size == size, "%s: size %lld, expected %lld", what, (long long)st.st_size, (long long)size);
}

static void check_offset(struct wl_checks *c, int fd, off_t want)
{
    off_t at = lseek(fd, 0, SEEK_CUR);
    wl_check(c, at == want, "fd %d offset %lld, expected %lld", fd, (long long)at, (long long)want);
}

static void check_region(struct wl_checks *c, int fd, const char *what, off_t at, size_t len, uint64_t seed)
{
    static char buf[DENSE_SIZE];
    ssize_t n = wl_pread_full(fd, buf, len, at);
    if (!wl_check(c, n == (ssize_t)len, "%s: read %zd of %zu bytes at %lld", what, n, len, (long long)at))
        return;
    wl_check_pattern(c, what, buf, len, seed);
}

static void check_hole(struct wl_checks *c, int fd, off_t from, off_t want)
{
    off_t h = lseek(fd, from, SEEK_HOLE);
    wl_check(c, h == want, "sparse: SEEK_HOLE from %lld gives %lld, expected %lld (a hole filled?)", (long long)from,
             (long long)h, (long long)want);
}

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    struct board *b = board;
    /* dense, fds 40 41 42 */
    check_stat(c, 40, "dense", 0640, DENSE_SIZE, 0);
    check_deleted_link(c, 40, "dense");
    check_deleted_link(c, 42, "dense");
    check_offset(c, 40, 12345);
    check_offset(c, 42, 99);
    lseek(41, 12346, SEEK_SET); /* a dup: moves fd 40 too */
    check_offset(c, 40, 12346);
    lseek(40, 12345, SEEK_SET);
    wl_check(c, (fcntl(42, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 42 is not O_RDONLY");
    wl_check(c, (fcntl(40, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 40 is not O_RDWR");
    check_region(c, 42, "dense content", 0, DENSE_SIZE, 11);
    struct stat st;
    fstat(40, &st);
    wl_check(c, st.st_mtim.tv_sec == kMtime && st.st_mtim.tv_nsec == 456789, "dense: mtime %lld.%09ld",
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (is_root)
        wl_check(c, st.st_uid == 1234 && st.st_gid == 5678, "dense: owner %d:%d, expected 1234:5678", st.st_uid,
                 st.st_gid);
    /* sparse, fd 43 */
    check_stat(c, 43, "sparse", 0600, (off_t)SPARSE_SIZE, 0);
    check_deleted_link(c, 43, "sparse");
    wl_check(c, (fcntl(43, F_GETFL) & O_APPEND) != 0, "fd 43 lost O_APPEND");
    check_region(c, 43, "sparse at 0", 0, PAGE, 21);
    check_region(c, 43, "sparse at 100 MiB", 100 << 20, 64 * 1024, 22);
    check_region(c, 43, "sparse at the end", (off_t)(SPARSE_SIZE - PAGE), PAGE, 23);
    check_hole(c, 43, 0, PAGE);
    check_hole(c, 43, (100 << 20), (100 << 20) + 64 * 1024);
    fstat(43, &st);
    wl_check(c, st.st_blocks * 512 < (4 << 20), "sparse: %lld bytes allocated, the holes were filled",
             (long long)st.st_blocks * 512);
    /* empty, fd 44 */
    check_stat(c, 44, "empty", 0604, 0, 0);
    check_deleted_link(c, 44, "empty");
    wl_check(c, (fcntl(44, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 44 is not O_WRONLY");
    /* mappings */
    wl_check_pattern(c, "shared-map page 0", shared_map, PAGE, 30);
    wl_check_pattern(c, "private-map page 0 (copied on write)", private_map, PAGE, 41);
    {
        static char want[2 * PAGE];
        wl_fill(want, 2 * PAGE, 40);
        wl_check(c, memcmp(private_map + PAGE, want + PAGE, PAGE) == 0, "private-map page 1 is not the file's");
    }
    wl_check(c, code() == 0x2a2a, "the deleted code returned %#x, expected 0x2a2a", code());
    /* the child writes one byte through fd 45 and into the shared mapping */
    off_t before = lseek(45, 0, SEEK_CUR);
    long req = ++b->requests;
    for (int i = 0; i < 1000 && b->done != req; i++)
        wl_sleep_ms(5);
    wl_check(c, b->done == req, "the child did not answer request %ld (done %ld)", req, b->done);
    char expect = (char)('a' + req % 26);
    wl_check(c, shared_map[PAGE + req % PAGE] == expect, "the child's byte is not in the shared mapping");
    check_offset(c, 45, before + 1);
    char got = 0;
    wl_check(c, pread(45, &got, 1, before) == 1 && got == expect, "the child's byte through fd 45: %d, expected %d",
             got, expect);
    check_stat(c, 45, "shared-fd", 0600, before + 1, 0);
    /* gone: fd 46 and the working directory */
    check_stat(c, 46, "gone", 0751, -1, 0);
    check_deleted_link(c, 46, "gone");
    struct stat cwd;
    wl_check(c, stat(".", &cwd) == 0 && fstat(46, &st) == 0 && cwd.st_ino == st.st_ino && cwd.st_dev == st.st_dev,
             "the working directory is not the directory of fd 46");
    char buf[WL_PATH_MAX];
    ssize_t n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = '\0';
    char want[WL_PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/gone (deleted)", ctl);
    wl_check(c, strcmp(buf, want) == 0, "cwd is \"%s\", expected \"%s\"", buf, want);
    check_stat(c, 47, "gone/inner", 0600, 5, 0);
    char inner[6] = {0};
    wl_check(c, pread(47, inner, 5, 0) == 5 && memcmp(inner, "inner", 5) == 0, "gone/inner holds \"%s\"", inner);
    /* fifo */
    check_deleted_link(c, 48, "fifo");
    fstat(48, &st);
    wl_check(c, S_ISFIFO(st.st_mode) && st.st_nlink == 0, "fd 48 is no unlinked FIFO (nlink %ld)", (long)st.st_nlink);
    wl_check(c, (st.st_mode & 07777) == 0620, "fifo mode %o, expected 620", st.st_mode & 07777);
    wl_check(c, (fcntl(49, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 49 is not O_WRONLY");
    wl_check(c, (fcntl(48, F_GETFL) & O_NONBLOCK) != 0, "fd 48 lost O_NONBLOCK");
    char fb[128];
    n = read(48, fb, sizeof fb);
    wl_check(c, n == (ssize_t)sizeof kFifoBytes - 1 && memcmp(fb, kFifoBytes, sizeof kFifoBytes - 1) == 0,
             "the FIFO held %zd bytes, expected \"%s\"", n, kFifoBytes);
    n = read(48, fb, sizeof fb);
    wl_check(c, n < 0 && errno == EAGAIN, "the FIFO holds more bytes than it should (%zd)", n);
    wl_write_all(49, kFifoBytes, sizeof kFifoBytes - 1); /* for the next verify */
    /* first / second */
    char q[WL_PATH_MAX];
    mk("second", q);
    struct stat named;
    wl_check(c, fstat(50, &st) == 0 && stat(q, &named) == 0 && st.st_ino == named.st_ino && st.st_dev == named.st_dev,
             "fd 50 is not the file named %s", q);
    check_offset(c, 50, 4);
    char two[10] = {0};
    wl_check(c, pread(50, two, 9, 0) == 9 && memcmp(two, "two names", 9) == 0, "fd 50 holds \"%s\"", two);

    if (exiting) {
        /* scribble over everything: a restore after this must undo it */
        static char junk[DENSE_SIZE];
        memset(junk, 'x', sizeof junk);
        wl_pwrite_all(40, junk, DENSE_SIZE, 0);
        wl_pwrite_all(43, junk, 8192, 8192);
        memset(shared_map, 'y', PAGE);
        if (ftruncate(44, 77) != 0)
            fb[0] = 0;
        fchmod(40, 0777);
        /* not "second": a file with a name is not in the image */
        if (read(48, fb, sizeof fb) < 0)
            fb[0] = 0;
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: unlinked CTL_DIR [MODE]");
    if (!realpath(argv[1], ctl))
        wl_die("realpath %s", argv[1]);
    setup();
    wl_ready(ctl);
    wl_serve(ctl, check, NULL, "unlinked files, mappings, directory, FIFO and hard link as dumped");
}
