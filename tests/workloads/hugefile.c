/* hugefile: files of hugetlbfs (a hugetlbfs mount's files, hugetlb memfds)
 * held open and mapped shared and private, each checked by the process
 * itself after a restore: the bytes of every mapping and of the file read
 * through its fd, the fd's offset and path, and the page size of each mapping
 * (/proc/self/smaps KernelPageSize, VmFlags ht).
 *
 * Usage: hugefile CTL_DIR MODE   (pages of 2 MiB)
 *
 * MODE:
 *   file    on the hugetlbfs mount named by $HUGE_MOUNT: F, the file
 *           huge.data of 2 pages (page 0 written whole, page 1 its first
 *           4 KiB), held as fd 'fd' at offset 12345, mapped shared (FS) and
 *           private (FP); FP's page 0 is then written anew (a huge page
 *           copied on write, which the file does not see), its page 1 still
 *           the file's. U, gone.data of 1 page, written, mapped shared and
 *           unlinked (its mapping shows "(deleted)"). At each verify a token
 *           is written through FS and read back through the fd (the
 *           mapping and the fd are the same file).
 *   memfd   M, a hugetlb memfd (MFD_HUGETLB) of 2 pages written whole through
 *           a shared mapping that is then unmapped, held as fd 'fd', mapped
 *           private (MP); MP's page 0 written anew (copied on write).
 * On verify "exit" the process exits.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/vfs.h>

#include "wl_common.h"

#define H2 (2UL << 20)
#define MFD_HUGETLB_ 4U
#define HUGETLBFS_MAGIC_ 0x958458f6
#define FD_POS 12345

static int fd = -1;
static char *FS, *FP, *U, *MP;
static char f_path[WL_PATH_MAX];

/* "KernelPageSize" in kB of the VMA holding addr, whether its VmFlags have
 * "ht" and whether it is "(deleted)"; -1 if not found. */
static long page_kb(const void *addr, int *ht, int *deleted)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    *ht = *deleted = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in)
                break;
            in = (unsigned long)addr >= lo && (unsigned long)addr < hi;
            if (in)
                *deleted = strstr(line, "(deleted)") != NULL;
            continue;
        }
        if (in && strncmp(line, "KernelPageSize:", 15) == 0)
            kb = strtol(line + 15, NULL, 10);
        if (in && strncmp(line, "VmFlags:", 8) == 0)
            *ht = strstr(line, " ht") != NULL;
    }
    fclose(f);
    return kb;
}

static void check_map(struct wl_checks *c, const char *what, const void *p, int want_deleted)
{
    int ht, deleted;
    long kb = page_kb(p, &ht, &deleted);
    wl_check(c, kb == 2048 && ht, "%s: KernelPageSize %ld kB (expected 2048), VmFlags ht %s", what, kb,
             ht ? "set" : "missing");
    wl_check(c, deleted == want_deleted, "%s: (deleted) %s in /proc/self/smaps", what, deleted ? "shown" : "not shown");
}

static void check_zero(struct wl_checks *c, const char *what, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i += 8)
        if (*(const uint64_t *)(p + i) != 0) {
            wl_check(c, 0, "%s: byte %zu not zero", what, i);
            return;
        }
    wl_check(c, 1, "%s", what);
}

/* The fd: on hugetlbfs with 2 MiB pages, of `size` bytes, at FD_POS, and its
 * first 4 KiB of page `page` read through it hold `seed`'s pattern. */
static void check_fd(struct wl_checks *c, off_t size, size_t page, uint64_t seed)
{
    struct stat st = {0};
    struct statfs sf = {0};
    static char buf[4096];
    wl_check(c, fstat(fd, &st) == 0 && st.st_size == size, "fd %d: size %lld (expected %lld)", fd,
             (long long)st.st_size, (long long)size);
    wl_check(c, fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == HUGETLBFS_MAGIC_ && sf.f_bsize == (long)H2,
             "fd %d: not on hugetlbfs with 2 MiB pages", fd);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    wl_check(c, pos == FD_POS, "fd %d: offset %lld (expected %d)", fd, (long long)pos, FD_POS);
    if (wl_pread_full(fd, buf, sizeof buf, (off_t)(page * H2)) != (ssize_t)sizeof buf)
        wl_check(c, 0, "fd %d: pread: %s", fd, strerror(errno));
    else
        wl_check_pattern(c, "the file's page read through the fd", buf, sizeof buf, seed);
}

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    if (FS) {
        wl_check_pattern(c, "FS page 0", FS, H2 - 4096, 10);
        wl_check_pattern(c, "FS page 1 head", FS + H2, 4096, 11);
        check_zero(c, "FS page 1 rest", FS + H2 + 4096, H2 - 4096);
        wl_check_pattern(c, "FP page 0 (copied on write)", FP, H2, 20);
        wl_check_pattern(c, "FP page 1 head (the file's)", FP + H2, 4096, 11);
        check_zero(c, "FP page 1 rest", FP + H2 + 4096, H2 - 4096);
        wl_check_pattern(c, "U", U, H2, 30);
        check_map(c, "FS", FS, 0);
        check_map(c, "FP", FP, 0);
        check_map(c, "U", U, 1);
        check_fd(c, (off_t)(2 * H2), 0, 10);
        char link[64], got[WL_PATH_MAX + 16];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, got, sizeof got - 1);
        got[n < 0 ? 0 : n] = '\0';
        wl_check(c, strcmp(got, f_path) == 0, "fd %d names %s (expected %s)", fd, got, f_path);
        /* FS and the fd are the same file, still. */
        uint64_t token = wl_now_ns(), back = 0;
        *(volatile uint64_t *)(FS + 2 * H2 - 8) = token;
        wl_check(c, pread(fd, &back, sizeof back, (off_t)(2 * H2 - 8)) == (ssize_t)sizeof back && back == token,
                 "token written through FS read back through fd %d as %#llx (expected %#llx)", fd,
                 (unsigned long long)back, (unsigned long long)token);
        *(volatile uint64_t *)(FS + 2 * H2 - 8) = 0;
    }
    if (MP) {
        wl_check_pattern(c, "MP page 0 (copied on write)", MP, H2, 40);
        wl_check_pattern(c, "MP page 1 (the memfd's)", MP + H2, H2, 41);
        check_map(c, "MP", MP, 1); /* "/memfd:hugepriv (deleted)" */
        check_fd(c, (off_t)(2 * H2), 0, 42);
    }
}

static char *map(size_t len, int flags, int from, const char *what)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, from, 0);
    if (p == MAP_FAILED)
        wl_die("mmap of %s: are huge pages reserved (/proc/sys/vm/nr_hugepages)?", what);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        wl_die("usage: hugefile CTL_DIR file|memfd");
    const char *ctl = argv[1], *mode = argv[2];
    if (strcmp(mode, "file") == 0) {
        const char *mnt = getenv("HUGE_MOUNT");
        if (!mnt)
            wl_die("HUGE_MOUNT is not set");
        wl_path(f_path, sizeof f_path, mnt, "huge.data");
        fd = open(f_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0 || ftruncate(fd, (off_t)(2 * H2)) != 0)
            wl_die("create %s", f_path);
        FS = map(2 * H2, MAP_SHARED, fd, "FS");
        wl_fill(FS, H2 - 4096, 10);
        wl_fill(FS + H2, 4096, 11);
        FP = map(2 * H2, MAP_PRIVATE, fd, "FP");
        wl_fill(FP, H2, 20);
        char u_path[WL_PATH_MAX];
        wl_path(u_path, sizeof u_path, mnt, "gone.data");
        int ufd = open(u_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (ufd < 0 || ftruncate(ufd, (off_t)H2) != 0)
            wl_die("create %s", u_path);
        U = map(H2, MAP_SHARED, ufd, "U");
        close(ufd);
        if (unlink(u_path) != 0)
            wl_die("unlink %s", u_path);
        wl_fill(U, H2, 30);
    } else if (strcmp(mode, "memfd") == 0) {
        fd = memfd_create("hugepriv", MFD_HUGETLB_ | MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)(2 * H2)) != 0)
            wl_die("hugetlb memfd");
        char *w = map(2 * H2, MAP_SHARED, fd, "the memfd (to write it)");
        wl_fill(w, H2, 42);
        wl_fill(w + H2, H2, 41);
        munmap(w, 2 * H2);
        MP = map(2 * H2, MAP_PRIVATE, fd, "MP");
        wl_fill(MP, H2, 40);
    } else {
        wl_die("unknown mode %s", mode);
    }
    if (lseek(fd, FD_POS, SEEK_SET) != FD_POS)
        wl_die("lseek");
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "hugetlbfs files and hugetlb memfds, content, page size, fd");
}
