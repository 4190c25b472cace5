/* shm: a parent and a child sharing every kind of shared memory.
 *
 * Usage: shm CTL_DIR [hugetlb|partial-sysv|ipc-ns]
 *
 * The parent sets up, before fork (so the child inherits the mappings):
 *   A  memfd "cryo test memfd" (MFD_CLOEXEC), 13522 bytes, mapped MAP_SHARED;
 *      the parent keeps its fd at offset 777, the child closes it;
 *   B  memfd "sealed (deleted)" (a name ending like the kernel's suffix),
 *      MFD_ALLOW_SEALING, 8192 bytes, sealed F_SEAL_SHRINK|F_SEAL_GROW, held by
 *      both through one description at offset 300; the child also maps it
 *      MAP_PRIVATE and changes its first page (copy on write);
 *   C  memfd "write-sealed", 4096 bytes, sealed F_SEAL_WRITE|F_SEAL_SEAL, then
 *      mapped MAP_SHARED read-only (no VM_MAYWRITE) in both, its fd kept;
 *   P  POSIX shm /dev/shm/cryo-shm-PID, 16484 bytes, mode 0640, mapped
 *      MAP_SHARED; the parent keeps the fd at offset 100;
 *   U  POSIX shm /dev/shm/cryo-shm-unl-PID, 8192 bytes, mapped MAP_SHARED,
 *      then closed and unlinked;
 *   S1 SysV segment with a key, 10000 bytes, mode 0640, attached at the fixed
 *      address 0x3f0000000000 (inherited); the child attaches it once more
 *      with SHM_RDONLY;
 *   S2 SysV IPC_PRIVATE segment, 8192 bytes, attached (inherited), then
 *      marked IPC_RMID.
 * Every object holds its own byte pattern except its last 64 bytes, a mailbox.
 *
 * On verify each process checks its own view: exact bytes, sizes, modes,
 * offsets, close-on-exec, seals (and that they hold), fd link and maps names,
 * SysV id, key, size, mode, attach count and removal mark (IPC_STAT), attach
 * permissions. Then the parent writes a token into every mailbox and sends it
 * over a pipe; the child checks it sees the token everywhere, writes token+1
 * back and reports its own checks over another pipe; the parent checks it sees
 * token+1: what one process writes, the other sees.
 *
 * On verify "exit" the parent overwrites the start of every object (so a
 * restore must put the dumped content back), kills the child and exits. The
 * SysV segment S1 and /dev/shm/cryo-shm-PID stay (the harness removes them,
 * see CTL_DIR/objects).
 *
 * Extra modes set up one more thing: "hugetlb" (a MFD_HUGETLB memfd held as
 * fd 42, restored), "partial-sysv" (an attach split by mprotect, refused),
 * "ipc-ns" (everything inside a new IPC namespace).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#include "wl_common.h"

#define PAGE 4096
#define MBOX 64
#define A_SIZE 13522
#define B_SIZE 8192
#define C_SIZE 4096
#define P_SIZE 16484
#define U_SIZE 8192
#define S1_SIZE 10000
#define S2_SIZE 8192
#define S1_ADDR ((void *)0x3f0000000000UL)
#define A_NAME "cryo test memfd"
#define B_NAME "sealed (deleted)"
#define C_NAME "write-sealed"
#define A_POS 777
#define B_POS 300
#define P_POS 100

static size_t round_page(size_t n) { return (n + PAGE - 1) & ~(size_t)(PAGE - 1); }

struct state {
    pid_t parent, child;
    int a_fd, b_fd, c_fd, p_fd;
    char *a, *c, *p, *u, *s1, *s2;
    char *s1_ro, *b_priv; /* child only */
    int s1_id, s2_id;
    key_t s1_key;
    mode_t p_mode;
    char p_path[128], u_path[128];
    int to_child, from_parent, to_parent, from_child;
};

static struct state st;

/* The /proc/self/maps line of the VMA holding addr: perms, inode, name. */
static int find_vma(void *addr, char perms[5], unsigned long *inode, char *name, size_t namesz)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[1024];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino;
        char p[5], dev[16];
        int n = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %15s %lu %n", &lo, &hi, p, &off, dev, &ino, &n) < 6)
            continue;
        if ((unsigned long)addr < lo || (unsigned long)addr >= hi)
            continue;
        memcpy(perms, p, 5);
        *inode = ino;
        char *nm = line + n;
        nm[strcspn(nm, "\n")] = '\0';
        snprintf(name, namesz, "%s", nm);
        found = 0;
        break;
    }
    fclose(f);
    return found;
}

static void check_vma(struct wl_checks *c, const char *what, void *addr, const char *want_perms,
                      long want_inode, const char *want_name)
{
    char perms[5] = "", name[512] = "";
    unsigned long ino = 0;
    if (!wl_check(c, find_vma(addr, perms, &ino, name, sizeof name) == 0, "%s: no VMA at %p", what, addr))
        return;
    wl_check(c, strcmp(perms, want_perms) == 0, "%s: perms expected %s actual %s", what, want_perms, perms);
    wl_check(c, strcmp(name, want_name) == 0, "%s: maps name expected \"%s\" actual \"%s\"", what, want_name,
             name);
    if (want_inode >= 0)
        wl_check(c, ino == (unsigned long)want_inode, "%s: maps inode expected %ld actual %lu", what, want_inode,
                 ino);
}

static void check_link(struct wl_checks *c, const char *what, int fd, const char *want)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = '\0';
    wl_check(c, n > 0 && strcmp(buf, want) == 0, "%s: fd %d link expected \"%s\" actual \"%s\"", what, fd, want,
             buf);
}

static void check_fd(struct wl_checks *c, const char *what, int fd, off_t want_pos, off_t want_size, int cloexec)
{
    off_t pos = lseek(fd, 0, SEEK_CUR);
    struct stat sb;
    int r = fstat(fd, &sb);
    int fl = fcntl(fd, F_GETFD);
    wl_check(c, pos == want_pos, "%s: offset expected %ld actual %ld", what, (long)want_pos, (long)pos);
    wl_check(c, r == 0 && sb.st_size == want_size, "%s: size expected %ld actual %ld", what, (long)want_size,
             (long)sb.st_size);
    wl_check(c, fl >= 0 && !!(fl & FD_CLOEXEC) == cloexec, "%s: close-on-exec expected %d actual %d", what,
             cloexec, fl < 0 ? -1 : !!(fl & FD_CLOEXEC));
}

static void check_bytes_fd(struct wl_checks *c, const char *what, int fd, size_t size, uint64_t seed)
{
    char *buf = malloc(size);
    ssize_t n = wl_pread_full(fd, buf, size - MBOX, 0);
    if (wl_check(c, n == (ssize_t)(size - MBOX), "%s: pread %zd of %zu bytes", what, n, size - MBOX))
        wl_check_pattern(c, what, buf, size - MBOX, seed);
    free(buf);
}

static void check_segment(struct wl_checks *c, const char *what, int id, key_t key, size_t size, mode_t mode,
                          unsigned long nattch, int removed)
{
    struct shmid_ds ds;
    if (!wl_check(c, shmctl(id, IPC_STAT, &ds) == 0, "%s: IPC_STAT of id %d failed: %s", what, id,
                  strerror(errno)))
        return;
    wl_check(c, ds.shm_perm.__key == key, "%s: key expected %#x actual %#x", what, (unsigned)key,
             (unsigned)ds.shm_perm.__key);
    wl_check(c, ds.shm_segsz == size, "%s: size expected %zu actual %zu", what, size, (size_t)ds.shm_segsz);
    wl_check(c, (ds.shm_perm.mode & 0777) == mode, "%s: mode expected %o actual %o", what, (unsigned)mode,
             ds.shm_perm.mode & 0777);
    wl_check(c, ds.shm_nattch == nattch, "%s: attach count expected %lu actual %lu", what, nattch,
             (unsigned long)ds.shm_nattch);
    wl_check(c, !!(ds.shm_perm.mode & SHM_DEST) == removed, "%s: removed mark expected %d actual %d", what,
             removed, !!(ds.shm_perm.mode & SHM_DEST));
}

static uint64_t mbox_get(const char *base, size_t size, int slot)
{
    uint64_t v;
    memcpy(&v, base + size - MBOX + 8 * slot, 8);
    return v;
}

static void mbox_put(char *base, size_t size, int slot, uint64_t v) { memcpy(base + size - MBOX + 8 * slot, &v, 8); }

static uint64_t mbox_get_fd(int fd, size_t size, int slot)
{
    uint64_t v = 0;
    if (pread(fd, &v, 8, (off_t)(size - MBOX + 8 * slot)) != 8)
        return 0;
    return v;
}

static void mbox_put_fd(int fd, size_t size, int slot, uint64_t v)
{
    if (pwrite(fd, &v, 8, (off_t)(size - MBOX + 8 * slot)) != 8)
        wl_die("pwrite mailbox");
}

/* Checks shared by both processes: the objects both can see. */
static void check_common(struct wl_checks *c, const char *who)
{
    char what[128], name[256];
    snprintf(what, sizeof what, "%s memfd A map", who);
    wl_check_pattern(c, what, st.a, A_SIZE - MBOX, 101);
    check_vma(c, what, st.a, "rw-s", -1, "/memfd:" A_NAME " (deleted)");
    snprintf(what, sizeof what, "%s memfd B", who);
    check_bytes_fd(c, what, st.b_fd, B_SIZE, 102);
    check_fd(c, what, st.b_fd, B_POS, B_SIZE, 0);
    check_link(c, what, st.b_fd, "/memfd:" B_NAME " (deleted)");
    int seals = fcntl(st.b_fd, F_GET_SEALS);
    wl_check(c, seals == (F_SEAL_SHRINK | F_SEAL_GROW), "%s: seals expected %#x actual %#x", what,
             F_SEAL_SHRINK | F_SEAL_GROW, seals);
    errno = 0;
    wl_check(c, ftruncate(st.b_fd, PAGE) != 0 && errno == EPERM, "%s: shrinking was not refused (errno %d)", what,
             errno);
    errno = 0;
    wl_check(c, ftruncate(st.b_fd, 4 * PAGE) != 0 && errno == EPERM, "%s: growing was not refused (errno %d)",
             what, errno);
    snprintf(what, sizeof what, "%s write-sealed memfd C", who);
    wl_check_pattern(c, what, st.c, C_SIZE, 107);
    check_vma(c, what, st.c, "r--s", -1, "/memfd:" C_NAME " (deleted)");
    seals = fcntl(st.c_fd, F_GET_SEALS);
    wl_check(c, seals == (F_SEAL_WRITE | F_SEAL_SEAL), "%s: seals expected %#x actual %#x", what,
             F_SEAL_WRITE | F_SEAL_SEAL, seals);
    errno = 0;
    wl_check(c, pwrite(st.c_fd, "x", 1, 0) < 0 && errno == EPERM, "%s: a write was not refused (errno %d)", what,
             errno);
    errno = 0;
    wl_check(c, mprotect(st.c, C_SIZE, PROT_READ | PROT_WRITE) != 0 && errno == EACCES,
             "%s: the read-only mapping became writable (errno %d)", what, errno);
    snprintf(what, sizeof what, "%s POSIX shm map", who);
    wl_check_pattern(c, what, st.p, P_SIZE - MBOX, 103);
    check_vma(c, what, st.p, "rw-s", -1, st.p_path);
    snprintf(what, sizeof what, "%s unlinked POSIX shm map", who);
    wl_check_pattern(c, what, st.u, U_SIZE - MBOX, 104);
    snprintf(name, sizeof name, "%s (deleted)", st.u_path);
    check_vma(c, what, st.u, "rw-s", -1, name);
    wl_check(c, access(st.u_path, F_OK) != 0 && errno == ENOENT, "%s: %s exists again", what, st.u_path);
    snprintf(what, sizeof what, "%s SysV S1 at the fixed address", who);
    wl_check(c, st.s1 == S1_ADDR, "%s: attached at %p", what, st.s1);
    wl_check_pattern(c, what, st.s1, S1_SIZE - MBOX, 105);
    snprintf(name, sizeof name, "/SYSV%08x (deleted)", (unsigned)st.s1_key);
    check_vma(c, what, st.s1, "rw-s", st.s1_id, name);
    check_segment(c, what, st.s1_id, st.s1_key, S1_SIZE, 0640, 3, 0);
    wl_check(c, shmget(st.s1_key, 0, 0) == st.s1_id, "%s: shmget(key) expected id %d actual %d", what, st.s1_id,
             shmget(st.s1_key, 0, 0));
    snprintf(what, sizeof what, "%s SysV S2 (removed)", who);
    wl_check_pattern(c, what, st.s2, S2_SIZE - MBOX, 106);
    check_vma(c, what, st.s2, "rw-s", st.s2_id, "/SYSV00000000 (deleted)");
    check_segment(c, what, st.s2_id, IPC_PRIVATE, S2_SIZE, 0600, 2, 1);
}

static void check_parent(struct wl_checks *c)
{
    check_common(c, "parent");
    check_fd(c, "parent memfd A fd", st.a_fd, A_POS, A_SIZE, 1);
    check_link(c, "parent memfd A fd", st.a_fd, "/memfd:" A_NAME " (deleted)");
    check_bytes_fd(c, "parent memfd A through its fd", st.a_fd, A_SIZE, 101);
    /* Made without MFD_ALLOW_SEALING: the kernel shows F_SEAL_SEAL. */
    wl_check(c, fcntl(st.a_fd, F_GET_SEALS) == F_SEAL_SEAL, "parent memfd A: seals expected %#x actual %#x",
             F_SEAL_SEAL, fcntl(st.a_fd, F_GET_SEALS));
    check_fd(c, "parent POSIX shm fd", st.p_fd, P_POS, P_SIZE, 1);
    check_link(c, "parent POSIX shm fd", st.p_fd, st.p_path);
    check_bytes_fd(c, "parent POSIX shm through its fd", st.p_fd, P_SIZE, 103);
    struct stat byname, held;
    wl_check(c, stat(st.p_path, &byname) == 0 && fstat(st.p_fd, &held) == 0 && byname.st_ino == held.st_ino,
             "parent: %s does not name the POSIX shm object held", st.p_path);
    wl_check(c, fstat(st.p_fd, &held) == 0 && (held.st_mode & 07777) == st.p_mode,
             "parent POSIX shm: mode expected %o actual %o", (unsigned)st.p_mode, (unsigned)(held.st_mode & 07777));
}

static void check_child(struct wl_checks *c)
{
    check_common(c, "child");
    wl_check_pattern(c, "child private copy of memfd B (page 0)", st.b_priv, PAGE, 112);
    char *shared = malloc(B_SIZE);
    wl_fill(shared, B_SIZE - MBOX, 102);
    wl_check(c, memcmp(st.b_priv + PAGE, shared + PAGE, PAGE - MBOX) == 0,
             "child private map of memfd B: page 1 differs from the memfd's");
    free(shared);
    check_vma(c, "child private map of memfd B", st.b_priv, "rw-p", -1, "/memfd:" B_NAME " (deleted)");
    wl_check_pattern(c, "child SysV S1 read-only attach", st.s1_ro, S1_SIZE - MBOX, 105);
    char name[64];
    snprintf(name, sizeof name, "/SYSV%08x (deleted)", (unsigned)st.s1_key);
    check_vma(c, "child SysV S1 read-only attach", st.s1_ro, "r--s", st.s1_id, name);
    errno = 0;
    wl_check(c, mprotect(st.s1_ro, round_page(S1_SIZE), PROT_READ | PROT_WRITE) != 0 && errno == EACCES,
             "child SysV S1 read-only attach: became writable (errno %d)", errno);
}

/* Mailboxes: slot 0 parent -> child, slot 1 child -> parent. */
static void put_all(int slot, uint64_t v)
{
    mbox_put(st.a, A_SIZE, slot, v);
    mbox_put_fd(st.b_fd, B_SIZE, slot, v);
    mbox_put(st.p, P_SIZE, slot, v);
    mbox_put(st.u, U_SIZE, slot, v);
    mbox_put(st.s1, S1_SIZE, slot, v);
    mbox_put(st.s2, S2_SIZE, slot, v);
}

static void check_all(struct wl_checks *c, const char *who, int slot, uint64_t v)
{
    struct {
        const char *name;
        uint64_t got;
    } seen[] = {
        {"memfd A", mbox_get(st.a, A_SIZE, slot)},
        {"memfd B", mbox_get_fd(st.b_fd, B_SIZE, slot)},
        {"POSIX shm", mbox_get(st.p, P_SIZE, slot)},
        {"unlinked POSIX shm", mbox_get(st.u, U_SIZE, slot)},
        {"SysV S1", mbox_get(st.s1, S1_SIZE, slot)},
        {"SysV S2", mbox_get(st.s2, S2_SIZE, slot)},
        {"SysV S1 read-only attach", st.s1_ro ? mbox_get(st.s1_ro, S1_SIZE, slot) : v},
    };
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        wl_check(c, seen[i].got == v, "%s does not see the other's write in %s: expected %#llx actual %#llx", who,
                 seen[i].name, (unsigned long long)v, (unsigned long long)seen[i].got);
}

static void child_loop(void)
{
    for (;;) {
        uint64_t token;
        ssize_t n = read(st.from_parent, &token, sizeof token);
        if (n == 0)
            _exit(0);
        if (n != sizeof token) {
            if (n < 0 && errno == EINTR)
                continue;
            _exit(3);
        }
        struct wl_checks c;
        wl_checks_init(&c);
        check_child(&c);
        check_all(&c, "child", 0, token);
        put_all(1, token + 1);
        char reply[WL_MSG_MAX + 64];
        if (c.failed)
            snprintf(reply, sizeof reply, "FAIL child: %d of %d checks: %s", c.failed, c.total, c.msg);
        else
            snprintf(reply, sizeof reply, "OK %d", c.total);
        uint32_t len = (uint32_t)strlen(reply);
        if (wl_write_all(st.to_parent, &len, 4) || wl_write_all(st.to_parent, reply, len))
            _exit(4);
    }
}

/* The child's report, bounded by a timeout. */
static int ask_child(uint64_t token, char *reply, size_t replysz)
{
    if (wl_write_all(st.to_child, &token, sizeof token))
        return snprintf(reply, replysz, "cannot write to the child: %s", strerror(errno)), -1;
    uint32_t len = 0;
    size_t got = 0;
    char buf[WL_MSG_MAX + 64];
    uint64_t deadline = wl_now_ns() + 5000000000ULL;
    while (got < 4 + len || got < 4) {
        struct pollfd pfd = {st.from_child, POLLIN, 0};
        int left = (int)((deadline - wl_now_ns()) / 1000000);
        if (wl_now_ns() >= deadline || poll(&pfd, 1, left > 0 ? left : 0) <= 0)
            return snprintf(reply, replysz, "no answer from the child within 5 s"), -1;
        char *dst = got < 4 ? (char *)&len + got : buf + (got - 4);
        size_t want = got < 4 ? 4 - got : len - (got - 4);
        ssize_t n = read(st.from_child, dst, want);
        if (n <= 0)
            return snprintf(reply, replysz, "the child's pipe closed"), -1;
        got += (size_t)n;
        if (got == 4 && len > sizeof buf - 1)
            return snprintf(reply, replysz, "garbled answer from the child"), -1;
    }
    buf[len] = '\0';
    snprintf(reply, replysz, "%s", buf);
    return strncmp(buf, "OK", 2) == 0 ? 0 : -1;
}

static void *map_fd(int fd, size_t size, int flags)
{
    void *m = mmap(NULL, round_page(size), PROT_READ | PROT_WRITE, flags, fd, 0);
    if (m == MAP_FAILED)
        wl_die("mmap");
    return m;
}

static int make_memfd(const char *name, unsigned flags, size_t size, uint64_t seed)
{
    int fd = memfd_create(name, flags);
    if (fd < 0)
        wl_die("memfd_create %s", name);
    char *buf = calloc(1, size);
    wl_fill(buf, size - MBOX, seed); /* the mailbox starts zeroed */
    if (wl_pwrite_all(fd, buf, size, 0))
        wl_die("write memfd %s", name);
    free(buf);
    return fd;
}

/* For the harness: what outlives the processes (S1, the /dev/shm file) and ids. */
static void write_objects_file(const char *ctl, int s3_id, int own_ipc_ns)
{
    char text[512];
    snprintf(text, sizeof text, "posix %s\n%s %d %d\nremoved %d\nremoved %d\nchild %d\n", st.p_path,
             own_ipc_ns ? "ns-sysv" : "sysv", st.s1_id, (int)st.s1_key, st.s2_id, s3_id, (int)st.child);
    wl_write_file_atomic(ctl, "objects", text);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR [hugetlb|partial-sysv|ipc-ns]", argv[0]);
    const char *ctl = argv[1];
    const char *mode = argc > 2 ? argv[2] : "";
    if (strcmp(mode, "ipc-ns") == 0 && unshare(CLONE_NEWIPC) != 0)
        wl_die("unshare(CLONE_NEWIPC)");
    st.parent = getpid();

    st.a_fd = make_memfd(A_NAME, MFD_CLOEXEC, A_SIZE, 101);
    st.a = map_fd(st.a_fd, A_SIZE, MAP_SHARED);
    if (lseek(st.a_fd, A_POS, SEEK_SET) != A_POS)
        wl_die("lseek A");
    st.b_fd = make_memfd(B_NAME, MFD_ALLOW_SEALING, B_SIZE, 102);
    if (fcntl(st.b_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
        wl_die("F_ADD_SEALS");
    if (lseek(st.b_fd, B_POS, SEEK_SET) != B_POS)
        wl_die("lseek B");
    st.c_fd = memfd_create(C_NAME, MFD_ALLOW_SEALING);
    if (st.c_fd < 0 || ftruncate(st.c_fd, C_SIZE) != 0)
        wl_die("memfd C");
    {
        char cbuf[C_SIZE];
        wl_fill(cbuf, C_SIZE, 107);
        if (wl_pwrite_all(st.c_fd, cbuf, C_SIZE, 0) ||
            fcntl(st.c_fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0)
            wl_die("sealing memfd C");
    }
    st.c = mmap(NULL, C_SIZE, PROT_READ, MAP_SHARED, st.c_fd, 0);
    if (st.c == MAP_FAILED)
        wl_die("mmap C");

    snprintf(st.p_path, sizeof st.p_path, "/dev/shm/cryo-shm-%d", (int)st.parent);
    st.p_fd = shm_open(st.p_path + 8, O_RDWR | O_CREAT | O_EXCL, 0640);
    if (st.p_fd < 0)
        wl_die("shm_open %s", st.p_path);
    if (fchmod(st.p_fd, 0640) != 0 || ftruncate(st.p_fd, P_SIZE) != 0)
        wl_die("sizing %s", st.p_path);
    st.p_mode = 0640;
    st.p = map_fd(st.p_fd, P_SIZE, MAP_SHARED);
    wl_fill(st.p, P_SIZE - MBOX, 103);
    if (lseek(st.p_fd, P_POS, SEEK_SET) != P_POS)
        wl_die("lseek P");
    snprintf(st.u_path, sizeof st.u_path, "/dev/shm/cryo-shm-unl-%d", (int)st.parent);
    int u_fd = shm_open(st.u_path + 8, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (u_fd < 0 || ftruncate(u_fd, U_SIZE) != 0)
        wl_die("shm_open %s", st.u_path);
    st.u = map_fd(u_fd, U_SIZE, MAP_SHARED);
    wl_fill(st.u, U_SIZE - MBOX, 104);
    close(u_fd);
    if (shm_unlink(st.u_path + 8) != 0)
        wl_die("shm_unlink %s", st.u_path);

    st.s1_key = (key_t)(0x43520000 | (st.parent & 0xffff));
    st.s1_id = shmget(st.s1_key, S1_SIZE, IPC_CREAT | IPC_EXCL | 0640);
    if (st.s1_id < 0)
        wl_die("shmget key %#x", (unsigned)st.s1_key);
    st.s1 = shmat(st.s1_id, S1_ADDR, 0);
    if (st.s1 == (void *)-1)
        wl_die("shmat S1 at %p", S1_ADDR);
    wl_fill(st.s1, S1_SIZE - MBOX, 105);
    st.s2_id = shmget(IPC_PRIVATE, S2_SIZE, IPC_CREAT | 0600);
    if (st.s2_id < 0)
        wl_die("shmget S2");
    st.s2 = shmat(st.s2_id, NULL, 0);
    if (st.s2 == (void *)-1)
        wl_die("shmat S2");
    wl_fill(st.s2, S2_SIZE - MBOX, 106);

    int s3_id = -1;
    if (strcmp(mode, "hugetlb") == 0) {
        int h = memfd_create("huge", MFD_HUGETLB);
        if (h < 0 || dup2(h, 42) != 42)
            wl_die("memfd_create MFD_HUGETLB");
        close(h);
    } else if (strcmp(mode, "partial-sysv") == 0) {
        s3_id = shmget(IPC_PRIVATE, 3 * PAGE, IPC_CREAT | 0600);
        char *s3 = s3_id < 0 ? (void *)-1 : shmat(s3_id, NULL, 0);
        if (s3 == (void *)-1 || mprotect(s3 + PAGE, PAGE, PROT_READ) != 0)
            wl_die("partial SysV attach");
        shmctl(s3_id, IPC_RMID, NULL);
    }

    int p2c[2], c2p[2];
    if (pipe(p2c) != 0 || pipe(c2p) != 0)
        wl_die("pipe");
    st.child = fork();
    if (st.child < 0)
        wl_die("fork");
    if (st.child == 0) {
        close(p2c[1]);
        close(c2p[0]);
        st.from_parent = p2c[0];
        st.to_parent = c2p[1];
        close(st.a_fd);
        close(st.p_fd);
        st.s1_ro = shmat(st.s1_id, NULL, SHM_RDONLY);
        if (st.s1_ro == (void *)-1)
            _exit(5);
        st.b_priv = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, st.b_fd, 0);
        if (st.b_priv == MAP_FAILED)
            _exit(6);
        wl_fill(st.b_priv, PAGE, 112); /* copy on write: the memfd keeps its page */
        child_loop();
    }
    close(p2c[0]);
    close(c2p[1]);
    st.to_child = p2c[1];
    st.from_child = c2p[0];
    /* Both hold S2 now: mark it removed (it lives while attached). */
    if (shmctl(st.s2_id, IPC_RMID, NULL) != 0)
        wl_die("IPC_RMID S2");
    /* The child's read-only attach makes 3. */
    for (int i = 0;; i++) {
        struct shmid_ds ds;
        if (shmctl(st.s1_id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 3)
            break;
        if (i > 2000)
            wl_die("the child did not attach S1");
        wl_sleep_ms(2);
    }
    write_objects_file(ctl, s3_id, strcmp(mode, "ipc-ns") == 0);
    wl_ready(ctl);

    int verifies = 0;
    for (;;) {
        wl_sleep_ms(10);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        verifies++;
        struct wl_checks c;
        wl_checks_init(&c);
        wl_check(&c, getpid() == st.parent, "parent pid expected %d actual %d", (int)st.parent, (int)getpid());
        check_parent(&c);
        uint64_t token = (wl_now_ns() << 1) | 1;
        put_all(0, token);
        char reply[WL_MSG_MAX + 64];
        int ok = ask_child(token, reply, sizeof reply) == 0;
        wl_check(&c, ok, "%s", reply);
        if (ok)
            check_all(&c, "parent", 1, token + 1);
        char summary[WL_MSG_MAX + 256];
        snprintf(summary, sizeof summary, "shm S1=%d S2=%d verifies=%d child=%.64s", st.s1_id, st.s2_id, verifies,
                 reply);
        ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            /* What a restore must undo: every object changed after the dump. */
            memset(st.a, 0xa5, 64);
            memset(st.p, 0xa5, 64);
            memset(st.u, 0xa5, 64);
            memset(st.s1, 0xa5, 64);
            memset(st.s2, 0xa5, 64);
            char junk[64];
            memset(junk, 0xa5, sizeof junk);
            if (pwrite(st.b_fd, junk, sizeof junk, 0) != sizeof junk)
                ok = 0;
            kill(st.child, SIGKILL);
            waitpid(st.child, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
