/* kinds: one fd or mapping of a kind cryo restores or refuses
 * (tests/e2e/test_kinds.py).
 *   kinds CTL MODE
 * MODE:
 *   opath          an O_PATH fd on a file (fd 10, offset irrelevant), an
 *                  O_PATH|O_NOFOLLOW fd on a symlink (fd 11), an O_PATH fd on
 *                  a directory with close-on-exec (fd 12), all in CTL
 *   opath_deleted  an O_PATH fd on a file that was then unlinked
 *   secretmem      a memfd_secret(2) fd, mapped, holding a pattern
 *   hugetlb_private / hugetlb_shared   a 2 MiB MAP_HUGETLB mapping with a pattern
 *   aio            an io_setup(2) context (its ring is the /[aio] mapping)
 *   guard          MADV_GUARD_INSTALL on the middle page of 3
 * verify checks that the fds point where they did (fstat against the paths,
 * O_PATH and FD_CLOEXEC flags, a symlink stays a symlink) and that mappings
 * hold their pattern. If the kernel cannot make the kind, prints
 * "unavailable: ..." and exits 3. Protocol: wl_common.h.
 */
#define _GNU_SOURCE
#include <linux/aio_abi.h>
#include <sys/mman.h>

#include "wl_common.h"

#define HUGE (2u << 20)
#define SEED 0x5eedu

static const char *mode;
static const char *ctl;
static char *region;
static size_t region_len;
static int secret_fd = -1;
static aio_context_t aio_ctx;

static int is(const char *m) { return strcmp(mode, m) == 0; }

static void unavailable(const char *what)
{
    printf("unavailable: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(3);
}

static void place(int fd, int at)
{
    if (fd < 0)
        wl_die("open for fd %d", at);
    if (dup3(fd, at, 0) != at)
        wl_die("dup3 %d", at);
    close(fd);
}

static void check_opath(struct wl_checks *c, int fd, const char *name, int want_link, int want_cloexec)
{
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, ctl, name);
    struct stat a, b;
    int fl = fcntl(fd, F_GETFL);
    wl_check(c, fl >= 0 && (fl & O_PATH), "fd %d flags 0%o lack O_PATH", fd, fl);
    wl_check(c, fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
             "fd %d is not %s", fd, path);
    wl_check(c, S_ISLNK(a.st_mode) == want_link, "fd %d: symlink %d, expected %d", fd, S_ISLNK(a.st_mode), want_link);
    int fdfl = fcntl(fd, F_GETFD);
    wl_check(c, ((fdfl & FD_CLOEXEC) != 0) == want_cloexec, "fd %d close-on-exec %d, expected %d", fd, fdfl, want_cloexec);
}

static void check_state(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    if (is("opath")) {
        check_opath(c, 10, "file", 0, 0);
        check_opath(c, 11, "link", 1, 0);
        check_opath(c, 12, "dir", 0, 1);
        /* Usable as O_PATH fds are: an fstatat through the directory. */
        struct stat st;
        wl_check(c, fstatat(12, "file", &st, 0) == 0, "fstatat through the directory fd");
        char buf[8];
        wl_check(c, read(10, buf, 1) < 0 && errno == EBADF, "an O_PATH fd could be read");
    }
    if (is("opath_deleted")) {
        struct stat st;
        int fl = fcntl(10, F_GETFL);
        wl_check(c, fl >= 0 && (fl & O_PATH), "fd 10 flags 0%o lack O_PATH", fl);
        wl_check(c, fstat(10, &st) == 0 && st.st_nlink == 0 && st.st_size == 1,
                 "fd 10: links %ld size %ld, expected an unlinked file of 1 byte", (long)st.st_nlink, (long)st.st_size);
    }
    if (region)
        wl_check_pattern(c, "region", region, region_len, SEED);
    if (is("aio")) {
        struct io_event ev;
        struct timespec ts = {0, 0};
        wl_check(c, syscall(SYS_io_getevents, aio_ctx, 0, 1, &ev, &ts) == 0, "io_getevents on the context");
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kinds CTL_DIR MODE\n");
        return 2;
    }
    ctl = argv[1];
    mode = argv[2];
    char path[WL_PATH_MAX], link[WL_PATH_MAX];
    if (is("opath") || is("opath_deleted")) {
        wl_path(path, sizeof path, ctl, "file");
        int f = open(path, O_CREAT | O_WRONLY, 0600);
        if (f < 0 || write(f, "x", 1) != 1)
            wl_die("create %s", path);
        close(f);
        place(open(path, O_PATH), 10);
        if (is("opath_deleted") && unlink(path) != 0)
            wl_die("unlink %s", path);
        if (is("opath")) {
            wl_path(link, sizeof link, ctl, "link");
            if (symlink("file", link) != 0)
                wl_die("symlink");
            place(open(link, O_PATH | O_NOFOLLOW), 11);
            wl_path(path, sizeof path, ctl, "dir");
            if (mkdir(path, 0700) != 0)
                wl_die("mkdir");
            int d = open(path, O_PATH | O_DIRECTORY);
            if (d < 0 || dup3(d, 12, O_CLOEXEC) != 12)
                wl_die("dir fd");
            close(d);
            wl_path(path, sizeof path, ctl, "dir/file");
            f = open(path, O_CREAT | O_WRONLY, 0600);
            close(f);
        }
    } else if (is("secretmem")) {
        secret_fd = (int)syscall(SYS_memfd_secret, 0);
        if (secret_fd < 0)
            unavailable("memfd_secret");
        region_len = 4096;
        if (ftruncate(secret_fd, (off_t)region_len) != 0)
            wl_die("ftruncate");
        region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_SHARED, secret_fd, 0);
        if (region == MAP_FAILED)
            unavailable("mmap of memfd_secret");
        wl_fill(region, region_len, SEED);
    } else if (is("hugetlb_private") || is("hugetlb_shared")) {
        region_len = HUGE;
        region = mmap(NULL, region_len, PROT_READ | PROT_WRITE,
                      (is("hugetlb_shared") ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (region == MAP_FAILED)
            unavailable("MAP_HUGETLB");
        wl_fill(region, region_len, SEED);
    } else if (is("aio")) {
        if (syscall(SYS_io_setup, 8, &aio_ctx) != 0)
            unavailable("io_setup");
    } else if (is("guard")) {
        region_len = 3 * 4096;
        region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED)
            wl_die("mmap");
        if (madvise(region + 4096, 4096, 102 /* MADV_GUARD_INSTALL */) != 0)
            unavailable("MADV_GUARD_INSTALL");
        wl_fill(region, 4096, SEED);
        region_len = 4096;
    } else {
        wl_die("unknown mode %s", mode);
    }
    wl_ready(ctl);
    wl_serve(ctl, check_state, NULL, mode);
}
