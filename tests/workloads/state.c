/* state: the big end-to-end workload.  Sets up process state of many kinds,
 * signals readiness, and on every verify request checks all of it.
 *
 * State (all checked by verify):
 *  - callee-saved registers r12..r15 live across a busy asm loop that runs
 *    repeatedly in the main loop (r12 counts iterations, r13 counts down,
 *    r14/r15 hold magic values; the iteration count is calibrated at start
 *    so one loop takes ~5 ms, then the main loop sleeps 5 ms and polls, so
 *    a checkpoint often lands inside the loop); any mismatch is recorded
 *    and reported;
 *  - a 32 KiB stack array, 64 small heap buffers, one >1 MiB heap buffer,
 *    a 512 KiB .bss array and a .data array, each with its own pattern;
 *  - an anonymous private mapping of 2000 pages (between PROT_NONE guard
 *    pages) named "cryo-test-anon" via PR_SET_VMA_ANON_NAME (when the kernel
 *    supports it) where exactly the even pages (1000) are written with a
 *    pattern and the odd pages are never touched: they must read zero (they
 *    are checked through /proc/self/pagemap and only read when present, so a
 *    verify never populates them);
 *  - a 32-page anonymous mapping filled with a pattern whose pages 8..23
 *    are then mprotect'ed PROT_READ (three VMAs: rw-p r--p rw-p);
 *  - a MAP_PRIVATE mapping of <ctl>/priv.dat (64 KiB) with pages 1,4,7,10,13
 *    dirtied in memory: those differ from the file, the others equal the
 *    file, and the file on disk is unchanged;
 *  - a MAP_SHARED mapping of <ctl>/shared.dat (64 KiB): writes through the
 *    mapping are visible with pread and pwrite is visible in the mapping;
 *  - open files: <ctl>/data.dat O_RDWR at fd 77 at offset 4321,
 *    data.dat O_RDONLY|O_CLOEXEC at offset 1234, <ctl>/append.log
 *    O_WRONLY|O_APPEND at offset 3000 (its size), and <ctl> itself
 *    O_RDONLY|O_DIRECTORY; none of these files is written after setup;
 *  - SIGUSR1 handler (SA_RESTART, sa_mask {SIGHUP,SIGUSR2}), SIGUSR1 blocked
 *    and pending; SIGTERM ignored; SIGALRM handler counting ticks of a 50 ms
 *    ITIMER_REAL;
 *  - pid, process group, session, comm and cwd unchanged.
 *
 * Before `ready` it also writes <ctl>/layout ("key value" lines) with the
 * addresses and fds above, for the harness.
 *
 * Usage: state CTL_DIR
 */
#include "wl_common.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/time.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

#define ANON_NAME "cryo-test-anon"
#define RO_NAME "cryo-test-ro"
#define ANON_PAGES 2000
#define RO_PAGES 32
#define RO_LO 8  /* first PROT_READ page */
#define RO_HI 24 /* first page after the PROT_READ part */
#define FILE_SIZE (64 * 1024)
#define STACK_WORDS 4096          /* 32 KiB */
#define BSS_WORDS (64 * 1024)     /* 512 KiB */
#define DATA_WORDS 256
#define N_SMALL 64
#define BIG_SIZE (3 * 1024 * 1024 + 123)
#define DATA_FILE_SIZE 8192
#define APPEND_SIZE 3000
#define FD_RW_NUM 77
#define FD_RW_POS 4321
#define FD_RO_POS 1234
#define TIMER_US 50000
#define REG_LOOP_NS 5000000ULL /* target duration of one register loop */
#define REG_MAGIC1 0x0123456789abcdefULL
#define REG_MAGIC2 0xfedcba9876543210ULL

enum {
    SEED_STACK = 0x5101,
    SEED_HEAP = 0x5200,  /* + buffer index */
    SEED_BIG = 0x5301,
    SEED_BSS = 0x5401,
    SEED_DATA = 0x5501,
    SEED_ANON = 0x10000, /* + page index */
    SEED_RO = 0x20000,   /* + page index */
    SEED_PRIV = 0x30000, /* + page index: file content */
    SEED_PRIV_DIRTY = 0x40000,
    SEED_SHARED = 0x50000,
    SEED_DATAFILE = 0x5601,
    SEED_APPEND = 0x5701,
};

static const int priv_dirty_pages[] = { 1, 4, 7, 10, 13 };

static uint64_t bss_arr[BSS_WORDS];
static uint64_t data_arr[DATA_WORDS] = { 0x1111111111111111ULL, 0x2222222222222222ULL };

static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t usr1_bad_mask; /* handler ran without its sa_mask */
static volatile sig_atomic_t alrm_ticks;

static void usr1_handler(int sig)
{
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    if (sig != SIGUSR1 || !sigismember(&cur, SIGUSR1) || !sigismember(&cur, SIGUSR2) ||
        !sigismember(&cur, SIGHUP))
        usr1_bad_mask = 1;
    usr1_count++;
}

static void alrm_handler(int sig)
{
    (void)sig;
    alrm_ticks++;
}

struct fdinfo_exp {
    const char *label;
    int fd;
    char path[WL_PATH_MAX];
    int accmode;
    int append;
    int cloexec;
    off_t pos;
    dev_t dev;
    ino_t ino;
};

struct state {
    const char *ctl;
    long page;
    pid_t pid, pgid, sid;
    char comm[17];
    char cwd[WL_PATH_MAX];

    uint64_t *stack_arr;
    unsigned char *small[N_SMALL];
    size_t small_size[N_SMALL];
    unsigned char *big;

    unsigned char *anon;
    int anon_named;
    unsigned char *ro;
    int ro_named;
    unsigned char *priv;
    int priv_fd; /* O_RDONLY fd of priv.dat used only to re-read the file */
    unsigned char *shared;
    int shared_fd;

    struct fdinfo_exp fds[4];
    int nfds;

    struct sigaction usr1_act, alrm_act;
    struct sigaction all_acts[65]; /* every disposition right after setup */
    sigset_t blocked;

    /* register loop bookkeeping (updated by the main loop) */
    uint64_t reg_iters; /* iterations per loop, calibrated to ~5 ms */
    unsigned long reg_loops;
    unsigned long reg_mismatches;
    char reg_first_bad[256];
    unsigned long reg_loops_prev_verify;

    int verifies;
};

/* Busy loop keeping its state in callee-saved registers only. */
static void reg_loop(struct state *st)
{
    uint64_t count, down, m1, m2;
    __asm__ volatile("mov %[k1], %%r14\n\t"
                     "mov %[k2], %%r15\n\t"
                     "xor %%r12d, %%r12d\n\t"
                     "mov %[n], %%r13\n\t"
                     "1:\n\t"
                     "inc %%r12\n\t"
                     "dec %%r13\n\t"
                     "jnz 1b\n\t"
                     "mov %%r12, %[c]\n\t"
                     "mov %%r13, %[d]\n\t"
                     "mov %%r14, %[a]\n\t"
                     "mov %%r15, %[b]\n\t"
                     : [c] "=&r"(count), [d] "=&r"(down), [a] "=&r"(m1), [b] "=&r"(m2)
                     : [n] "r"(st->reg_iters), [k1] "r"(REG_MAGIC1), [k2] "r"(REG_MAGIC2)
                     : "r12", "r13", "r14", "r15", "cc");
    st->reg_loops++;
    if (count != st->reg_iters || down != 0 || m1 != REG_MAGIC1 || m2 != REG_MAGIC2) {
        if (st->reg_mismatches == 0)
            snprintf(st->reg_first_bad, sizeof st->reg_first_bad,
                     "loop %lu: r12 expected %llu actual %llu, r13 expected 0 actual %llu, "
                     "r14 expected 0x%llx actual 0x%llx, r15 expected 0x%llx actual 0x%llx",
                     st->reg_loops, (unsigned long long)st->reg_iters, (unsigned long long)count,
                     (unsigned long long)down, (unsigned long long)REG_MAGIC1,
                     (unsigned long long)m1, (unsigned long long)REG_MAGIC2,
                     (unsigned long long)m2);
        st->reg_mismatches++;
    }
}

/* ---- setup helpers ------------------------------------------------------ */

static void create_file(const char *ctl, const char *name, size_t size, uint64_t seed_base,
                        int per_page, long page)
{
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, ctl, name);
    unsigned char *buf = malloc(size);
    if (!buf)
        wl_die("malloc");
    if (per_page) {
        for (size_t p = 0; p < size / (size_t)page; p++)
            wl_fill(buf + p * (size_t)page, (size_t)page, seed_base + p);
    } else {
        wl_fill(buf, size, seed_base);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        wl_die("create %s", path);
    if (wl_write_all(fd, buf, size) < 0 || fsync(fd) < 0 || close(fd) < 0)
        wl_die("write %s", path);
    free(buf);
}

/* mmap `pages` anonymous rw pages between two PROT_NONE guard pages so the
 * VMA never merges with a neighbour. */
static unsigned char *map_guarded_anon(long page, size_t pages)
{
    size_t total = (pages + 2) * (size_t)page;
    unsigned char *res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED)
        wl_die("mmap reserve");
    unsigned char *p = mmap(res + page, pages * (size_t)page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        wl_die("mmap fixed");
    return p;
}

static int name_vma(void *addr, size_t len, const char *name)
{
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, len,
              (unsigned long)name) == 0)
        return 1;
    if (errno == EINVAL || errno == ENOSYS) /* kernel without CONFIG_ANON_VMA_NAME */
        return 0;
    wl_die("prctl(PR_SET_VMA_ANON_NAME)");
    return 0;
}

static void add_fd(struct state *st, const char *label, int fd, const char *path, int accmode,
                   int append, int cloexec)
{
    struct fdinfo_exp *e = &st->fds[st->nfds++];
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        wl_die("fstat %s", path);
    e->label = label;
    e->fd = fd;
    snprintf(e->path, sizeof e->path, "%s", path);
    e->accmode = accmode;
    e->append = append;
    e->cloexec = cloexec;
    e->pos = lseek(fd, 0, SEEK_CUR);
    e->dev = sb.st_dev;
    e->ino = sb.st_ino;
}

static void setup_files(struct state *st)
{
    char path[WL_PATH_MAX];
    const char *ctl = st->ctl;

    /* private + shared mapped files (per-page patterns) */
    create_file(ctl, "priv.dat", FILE_SIZE, SEED_PRIV, 1, st->page);
    create_file(ctl, "shared.dat", FILE_SIZE, SEED_SHARED, 1, st->page);
    create_file(ctl, "data.dat", DATA_FILE_SIZE, SEED_DATAFILE, 0, st->page);

    wl_path(path, sizeof path, ctl, "priv.dat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        wl_die("open %s", path);
    st->priv = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (st->priv == MAP_FAILED)
        wl_die("mmap %s", path);
    st->priv_fd = fd; /* kept open (cloexec, read-only) to compare the file */
    for (size_t i = 0; i < sizeof priv_dirty_pages / sizeof priv_dirty_pages[0]; i++) {
        int p = priv_dirty_pages[i];
        wl_fill(st->priv + (size_t)p * (size_t)st->page, (size_t)st->page,
                SEED_PRIV_DIRTY + (uint64_t)p);
    }

    wl_path(path, sizeof path, ctl, "shared.dat");
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        wl_die("open %s", path);
    st->shared = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (st->shared == MAP_FAILED)
        wl_die("mmap %s", path);
    st->shared_fd = fd;

    /* data.dat O_RDWR at fd 77, offset FD_RW_POS */
    wl_path(path, sizeof path, ctl, "data.dat");
    fd = open(path, O_RDWR);
    if (fd < 0)
        wl_die("open %s", path);
    if (dup2(fd, FD_RW_NUM) != FD_RW_NUM)
        wl_die("dup2");
    close(fd);
    if (lseek(FD_RW_NUM, FD_RW_POS, SEEK_SET) != FD_RW_POS)
        wl_die("lseek");
    add_fd(st, "data.dat(rw)", FD_RW_NUM, path, O_RDWR, 0, 0);

    /* data.dat O_RDONLY|O_CLOEXEC, offset reached by reading */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        wl_die("open %s", path);
    {
        char tmp[FD_RO_POS];
        if (read(fd, tmp, sizeof tmp) != (ssize_t)sizeof tmp)
            wl_die("read %s", path);
    }
    add_fd(st, "data.dat(ro)", fd, path, O_RDONLY, 0, 1);

    /* append.log: O_WRONLY|O_APPEND, written only here */
    wl_path(path, sizeof path, ctl, "append.log");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        wl_die("open %s", path);
    {
        unsigned char buf[APPEND_SIZE];
        wl_fill(buf, sizeof buf, SEED_APPEND);
        if (wl_write_all(fd, buf, 1000) < 0 || wl_write_all(fd, buf + 1000, APPEND_SIZE - 1000))
            wl_die("write %s", path);
        if (fsync(fd) < 0)
            wl_die("fsync %s", path);
    }
    add_fd(st, "append.log", fd, path, O_WRONLY, 1, 0);

    /* the control directory itself */
    fd = open(ctl, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        wl_die("open %s", ctl);
    add_fd(st, "ctl-dir", fd, ctl, O_RDONLY, 0, 0);
}

static void setup_signals(struct state *st)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = usr1_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaddset(&sa.sa_mask, SIGHUP);
    if (sigaction(SIGUSR1, &sa, NULL) < 0)
        wl_die("sigaction SIGUSR1");
    if (sigaction(SIGUSR1, NULL, &st->usr1_act) < 0)
        wl_die("sigaction SIGUSR1 get");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        wl_die("sigaction SIGTERM");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alrm_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) < 0)
        wl_die("sigaction SIGALRM");
    if (sigaction(SIGALRM, NULL, &st->alrm_act) < 0)
        wl_die("sigaction SIGALRM get");

    struct itimerval it = { { 0, TIMER_US }, { 0, TIMER_US } };
    if (setitimer(ITIMER_REAL, &it, NULL) < 0)
        wl_die("setitimer");

    for (int s = 1; s < 65; s++)
        if (s != 32 && s != 33 && sigaction(s, NULL, &st->all_acts[s]) < 0)
            wl_die("sigaction %d get", s);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        wl_die("sigprocmask");
    if (sigprocmask(SIG_BLOCK, NULL, &st->blocked) < 0)
        wl_die("sigprocmask get");
    raise(SIGUSR1);
    sigset_t pend;
    sigpending(&pend);
    if (!sigismember(&pend, SIGUSR1) || usr1_count != 0) {
        errno = 0;
        wl_die("SIGUSR1 not pending after raise");
    }
}

static void setup_memory(struct state *st)
{
    long page = st->page;

    wl_fill(st->stack_arr, STACK_WORDS * 8, SEED_STACK);
    for (int i = 0; i < N_SMALL; i++) {
        st->small_size[i] = 16 + (size_t)i * 61;
        st->small[i] = malloc(st->small_size[i]);
        if (!st->small[i])
            wl_die("malloc");
        wl_fill(st->small[i], st->small_size[i], SEED_HEAP + (uint64_t)i);
    }
    st->big = malloc(BIG_SIZE);
    if (!st->big)
        wl_die("malloc big");
    wl_fill(st->big, BIG_SIZE, SEED_BIG);
    wl_fill(bss_arr, sizeof bss_arr, SEED_BSS);
    wl_fill(data_arr, sizeof data_arr, SEED_DATA);

    /* 2000 anonymous pages, named, only even pages touched */
    st->anon = map_guarded_anon(page, ANON_PAGES);
    madvise(st->anon, ANON_PAGES * (size_t)page, MADV_NOHUGEPAGE); /* odd pages stay absent */
    st->anon_named = name_vma(st->anon, ANON_PAGES * (size_t)page, ANON_NAME);
    for (size_t p = 0; p < ANON_PAGES; p += 2)
        wl_fill(st->anon + p * (size_t)page, (size_t)page, SEED_ANON + p);

    /* 32 pages filled, pages [RO_LO, RO_HI) then made read-only */
    st->ro = map_guarded_anon(page, RO_PAGES);
    st->ro_named = name_vma(st->ro, RO_PAGES * (size_t)page, RO_NAME);
    for (size_t p = 0; p < RO_PAGES; p++)
        wl_fill(st->ro + p * (size_t)page, (size_t)page, SEED_RO + p);
    if (mprotect(st->ro + RO_LO * page, (RO_HI - RO_LO) * (size_t)page, PROT_READ) < 0)
        wl_die("mprotect");
}

static void write_layout(const struct state *st)
{
    char buf[8192];
    size_t n = 0;
    long page = st->page;
#define OUT(...) n += (size_t)snprintf(buf + n, sizeof buf - n, __VA_ARGS__)
    OUT("pid %d\n", (int)st->pid);
    OUT("page_size %ld\n", page);
    OUT("anon_start 0x%lx\nanon_end 0x%lx\n", (unsigned long)st->anon,
        (unsigned long)(st->anon + ANON_PAGES * page));
    OUT("anon_named %d\nanon_name %s\nanon_touched_pages %d\n", st->anon_named, ANON_NAME,
        ANON_PAGES / 2);
    OUT("ro_start 0x%lx\nro_end 0x%lx\n", (unsigned long)st->ro,
        (unsigned long)(st->ro + RO_PAGES * page));
    OUT("ro_prot_start 0x%lx\nro_prot_end 0x%lx\n", (unsigned long)(st->ro + RO_LO * page),
        (unsigned long)(st->ro + RO_HI * page));
    OUT("priv_start 0x%lx\npriv_end 0x%lx\n", (unsigned long)st->priv,
        (unsigned long)(st->priv + FILE_SIZE));
    OUT("shared_start 0x%lx\nshared_end 0x%lx\n", (unsigned long)st->shared,
        (unsigned long)(st->shared + FILE_SIZE));
    OUT("big_start 0x%lx\n", (unsigned long)st->big);
    OUT("stack_arr 0x%lx\n", (unsigned long)st->stack_arr);
    OUT("bss_arr 0x%lx\n", (unsigned long)bss_arr);
    for (int i = 0; i < st->nfds; i++)
        OUT("fd %d pos %lld cloexec %d %s\n", st->fds[i].fd, (long long)st->fds[i].pos,
            st->fds[i].cloexec, st->fds[i].path);
#undef OUT
    wl_write_file_atomic(st->ctl, "layout", buf);
}

/* ---- verification ------------------------------------------------------- */

/* Find the /proc/self/maps line starting at `start`.  Returns 1 if found
 * and fills end / perms (5 chars) / name. */
static int maps_lookup(unsigned long start, unsigned long *end, char *perms, char *name,
                       size_t namesz)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    char line[WL_PATH_MAX + 256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char p[8];
        int off = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s%n", &s, &e, p, &off) < 3)
            continue;
        if (s != start)
            continue;
        const char *nm = line + off;
        while (*nm == ' ')
            nm++;
        size_t l = strcspn(nm, "\n");
        if (l >= namesz)
            l = namesz - 1;
        memcpy(name, nm, l);
        name[l] = '\0';
        *end = e;
        memcpy(perms, p, 5);
        perms[4] = '\0';
        found = 1;
        break;
    }
    fclose(f);
    return found;
}

static void check_vma(struct wl_checks *c, const char *what, const void *start, size_t len,
                      const char *exp_perms, const char *exp_name)
{
    unsigned long end = 0;
    char perms[8] = "", name[WL_PATH_MAX] = "";
    if (!wl_check(c, maps_lookup((unsigned long)start, &end, perms, name, sizeof name),
                  "%s: no VMA starting at %p in /proc/self/maps", what, start))
        return;
    wl_check(c, end == (unsigned long)start + len,
             "%s: VMA end expected 0x%lx actual 0x%lx", what, (unsigned long)start + len, end);
    wl_check(c, strcmp(perms, exp_perms) == 0, "%s: VMA perms expected %s actual %s", what,
             exp_perms, perms);
    if (exp_name)
        wl_check(c, strcmp(name, exp_name) == 0, "%s: VMA name expected '%s' actual '%s'", what,
                 exp_name, name);
}

static void verify_memory(struct state *st, struct wl_checks *c, int *odd_present)
{
    long page = st->page;
    char what[128];
    char nm[64];

    wl_check_pattern(c, "stack array", st->stack_arr, STACK_WORDS * 8, SEED_STACK);
    int bad_small = -1;
    for (int i = 0; i < N_SMALL && bad_small < 0; i++)
        if (wl_first_mismatch(st->small[i], st->small_size[i], SEED_HEAP + (uint64_t)i) >= 0)
            bad_small = i;
    if (bad_small >= 0) {
        snprintf(what, sizeof what, "small heap buffer %d (%zu bytes at %p)", bad_small,
                 st->small_size[bad_small], (void *)st->small[bad_small]);
        wl_check_pattern(c, what, st->small[bad_small], st->small_size[bad_small],
                         SEED_HEAP + (uint64_t)bad_small);
    } else {
        wl_check(c, 1, "small heap buffers");
    }
    wl_check_pattern(c, "big heap buffer", st->big, BIG_SIZE, SEED_BIG);
    wl_check_pattern(c, ".bss array", bss_arr, sizeof bss_arr, SEED_BSS);
    wl_check_pattern(c, ".data array", data_arr, sizeof data_arr, SEED_DATA);

    /* anon mapping: even pages pattern, odd pages zero */
    snprintf(nm, sizeof nm, "[anon:%s]", ANON_NAME);
    check_vma(c, "anon mapping", st->anon, ANON_PAGES * (size_t)page, "rw-p",
              st->anon_named ? nm : "");
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    long bad_even = -1, bad_odd = -1;
    *odd_present = 0;
    for (size_t p = 0; p < ANON_PAGES; p++) {
        unsigned char *pg = st->anon + p * (size_t)page;
        if (p % 2 == 0) {
            if (bad_even < 0 && wl_first_mismatch(pg, (size_t)page, SEED_ANON + p) >= 0)
                bad_even = (long)p;
            continue;
        }
        uint64_t ent = ~0ULL; /* unknown: read the page */
        if (pm >= 0) {
            off_t off = (off_t)(((uintptr_t)pg / (uintptr_t)page) * 8);
            if (wl_pread_full(pm, &ent, 8, off) != 8)
                ent = ~0ULL;
        }
        int maybe_data = (ent >> 63 & 1) || (ent >> 62 & 1); /* present or swapped */
        if (!maybe_data)
            continue; /* never populated: reads as zero without touching it */
        (*odd_present)++;
        const uint64_t *w = (const uint64_t *)pg;
        for (size_t i = 0; i < (size_t)page / 8; i++)
            if (w[i] != 0) {
                if (bad_odd < 0)
                    bad_odd = (long)p;
                break;
            }
    }
    if (pm >= 0)
        close(pm);
    if (bad_even >= 0) {
        snprintf(what, sizeof what, "anon mapping even page %ld", bad_even);
        wl_check_pattern(c, what, st->anon + bad_even * page, (size_t)page,
                         SEED_ANON + (uint64_t)bad_even);
    } else {
        wl_check(c, 1, "anon even pages");
    }
    wl_check(c, bad_odd < 0, "anon mapping odd page %ld (never written): expected all zero, "
             "actual non-zero", bad_odd);

    /* read-only region: content and the three VMAs */
    long bad_ro = -1;
    for (size_t p = 0; p < RO_PAGES && bad_ro < 0; p++)
        if (wl_first_mismatch(st->ro + p * (size_t)page, (size_t)page, SEED_RO + p) >= 0)
            bad_ro = (long)p;
    if (bad_ro >= 0) {
        snprintf(what, sizeof what, "ro region page %ld", bad_ro);
        wl_check_pattern(c, what, st->ro + bad_ro * page, (size_t)page,
                         SEED_RO + (uint64_t)bad_ro);
    } else {
        wl_check(c, 1, "ro region");
    }
    snprintf(nm, sizeof nm, "[anon:%s]", RO_NAME);
    const char *ron = st->ro_named ? nm : "";
    check_vma(c, "ro region head", st->ro, RO_LO * (size_t)page, "rw-p", ron);
    check_vma(c, "ro region PROT_READ part", st->ro + RO_LO * page,
              (RO_HI - RO_LO) * (size_t)page, "r--p", ron);
    check_vma(c, "ro region tail", st->ro + RO_HI * page, (RO_PAGES - RO_HI) * (size_t)page,
              "rw-p", ron);

    /* private file mapping */
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, st->ctl, "priv.dat");
    check_vma(c, "private file mapping", st->priv, FILE_SIZE, "rw-p", path);
    unsigned char *filebuf = malloc(FILE_SIZE);
    if (!filebuf)
        wl_die("malloc");
    for (size_t p = 0; p < FILE_SIZE / (size_t)page; p++) {
        int dirty = 0;
        for (size_t i = 0; i < sizeof priv_dirty_pages / sizeof priv_dirty_pages[0]; i++)
            if ((size_t)priv_dirty_pages[i] == p)
                dirty = 1;
        uint64_t seed = dirty ? SEED_PRIV_DIRTY + p : SEED_PRIV + p;
        if (wl_first_mismatch(st->priv + p * (size_t)page, (size_t)page, seed) >= 0) {
            snprintf(what, sizeof what, "private file mapping %s page %zu",
                     dirty ? "dirtied" : "clean", p);
            wl_check_pattern(c, what, st->priv + p * (size_t)page, (size_t)page, seed);
            break;
        }
    }
    wl_check(c, wl_pread_full(st->priv_fd, filebuf, FILE_SIZE, 0) == FILE_SIZE,
             "pread priv.dat: expected %d bytes", FILE_SIZE);
    for (size_t p = 0; p < FILE_SIZE / (size_t)page; p++) {
        if (wl_first_mismatch(filebuf + p * (size_t)page, (size_t)page, SEED_PRIV + p) >= 0) {
            snprintf(what, sizeof what, "priv.dat on disk page %zu", p);
            wl_check_pattern(c, what, filebuf + p * (size_t)page, (size_t)page, SEED_PRIV + p);
            break;
        }
    }

    /* shared file mapping */
    wl_path(path, sizeof path, st->ctl, "shared.dat");
    check_vma(c, "shared file mapping", st->shared, FILE_SIZE, "rw-s", path);
    wl_check(c, wl_pread_full(st->shared_fd, filebuf, FILE_SIZE, 0) == FILE_SIZE,
             "pread shared.dat: expected %d bytes", FILE_SIZE);
    size_t diff = 0;
    while (diff < FILE_SIZE && filebuf[diff] == st->shared[diff])
        diff++;
    wl_check(c, diff == FILE_SIZE,
             "shared mapping vs shared.dat differ at offset %zu: file 0x%02x mapping 0x%02x",
             diff, diff < FILE_SIZE ? filebuf[diff] : 0, diff < FILE_SIZE ? st->shared[diff] : 0);
    /* words 0 and 1 of page 0 are scratch; everything else keeps its pattern */
    {
        /* page 0 from word 2 on */
        const uint64_t *w = (const uint64_t *)st->shared;
        size_t bad = 0;
        for (size_t i = 2; i < (size_t)page / 8 && !bad; i++)
            if (w[i] != wl_pat(SEED_SHARED, i))
                bad = i;
        wl_check(c, bad == 0, "shared mapping page 0 word %zu: expected 0x%016llx actual 0x%016llx",
                 bad, (unsigned long long)wl_pat(SEED_SHARED, bad),
                 (unsigned long long)w[bad]);
        for (size_t p = 1; p < FILE_SIZE / (size_t)page; p++) {
            if (wl_first_mismatch(st->shared + p * (size_t)page, (size_t)page, SEED_SHARED + p) >=
                0) {
                snprintf(what, sizeof what, "shared mapping page %zu", p);
                wl_check_pattern(c, what, st->shared + p * (size_t)page, (size_t)page,
                                 SEED_SHARED + p);
                break;
            }
        }
    }
    uint64_t nonce = wl_now_ns() ^ ((uint64_t)st->verifies << 48) ^ 0xA5A5000000000000ULL;
    volatile uint64_t *sw = (volatile uint64_t *)st->shared;
    sw[0] = nonce;
    uint64_t got = 0;
    wl_pread_full(st->shared_fd, &got, 8, 0);
    wl_check(c, got == nonce,
             "write via MAP_SHARED mapping not visible via pread: expected 0x%016llx actual "
             "0x%016llx",
             (unsigned long long)nonce, (unsigned long long)got);
    uint64_t nonce2 = ~nonce;
    wl_check(c, wl_pwrite_all(st->shared_fd, &nonce2, 8, 8) == 0, "pwrite shared.dat failed: %s",
             strerror(errno));
    wl_check(c, sw[1] == nonce2,
             "pwrite not visible via MAP_SHARED mapping: expected 0x%016llx actual 0x%016llx",
             (unsigned long long)nonce2, (unsigned long long)sw[1]);
    free(filebuf);
}

static void verify_fds(struct state *st, struct wl_checks *c)
{
    for (int i = 0; i < st->nfds; i++) {
        const struct fdinfo_exp *e = &st->fds[i];
        int fl = fcntl(e->fd, F_GETFL);
        if (!wl_check(c, fl >= 0, "fd %d (%s): not open: %s", e->fd, e->label, strerror(errno)))
            continue;
        wl_check(c, (fl & O_ACCMODE) == e->accmode,
                 "fd %d (%s): access mode expected %d actual %d", e->fd, e->label, e->accmode,
                 fl & O_ACCMODE);
        wl_check(c, !!(fl & O_APPEND) == e->append, "fd %d (%s): O_APPEND expected %d actual %d",
                 e->fd, e->label, e->append, !!(fl & O_APPEND));
        int fdfl = fcntl(e->fd, F_GETFD);
        wl_check(c, fdfl >= 0 && !!(fdfl & FD_CLOEXEC) == e->cloexec,
                 "fd %d (%s): FD_CLOEXEC expected %d actual %d", e->fd, e->label, e->cloexec,
                 fdfl < 0 ? -1 : !!(fdfl & FD_CLOEXEC));
        off_t pos = lseek(e->fd, 0, SEEK_CUR);
        wl_check(c, pos == e->pos, "fd %d (%s): offset expected %lld actual %lld", e->fd,
                 e->label, (long long)e->pos, (long long)pos);
        struct stat sb, ps;
        if (fstat(e->fd, &sb) == 0 && stat(e->path, &ps) == 0)
            wl_check(c, sb.st_dev == ps.st_dev && sb.st_ino == ps.st_ino,
                     "fd %d (%s): refers to inode %lu, expected %s (inode %lu)", e->fd, e->label,
                     (unsigned long)sb.st_ino, e->path, (unsigned long)ps.st_ino);
        else
            wl_check(c, 0, "fd %d (%s): fstat/stat %s failed: %s", e->fd, e->label, e->path,
                     strerror(errno));
    }
    /* content of the files behind the fds (never rewritten after setup) */
    unsigned char buf[DATA_FILE_SIZE];
    ssize_t n = wl_pread_full(st->fds[0].fd, buf, DATA_FILE_SIZE, 0);
    if (wl_check(c, n == DATA_FILE_SIZE, "pread data.dat via fd %d: expected %d bytes actual %zd",
                 st->fds[0].fd, DATA_FILE_SIZE, n))
        wl_check_pattern(c, "data.dat content", buf, DATA_FILE_SIZE, SEED_DATAFILE);
    n = wl_pread_full(st->fds[1].fd, buf, 64, 0);
    if (wl_check(c, n == 64, "pread data.dat via fd %d: expected 64 bytes actual %zd",
                 st->fds[1].fd, n))
        wl_check_pattern(c, "data.dat first bytes via O_RDONLY fd", buf, 64, SEED_DATAFILE);
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, st->ctl, "append.log");
    int afd = open(path, O_RDONLY | O_CLOEXEC);
    if (wl_check(c, afd >= 0, "open %s: %s", path, strerror(errno))) {
        n = wl_pread_full(afd, buf, sizeof buf, 0);
        wl_check(c, n == APPEND_SIZE, "append.log size expected %d actual %zd", APPEND_SIZE, n);
        if (n >= APPEND_SIZE)
            wl_check_pattern(c, "append.log content", buf, APPEND_SIZE, SEED_APPEND);
        close(afd);
    }
    /* stdout / stderr still usable */
    wl_check(c, fcntl(1, F_GETFD) >= 0 && fcntl(2, F_GETFD) >= 0, "stdout/stderr not open");
}

static int same_sigmask(const sigset_t *a, const sigset_t *b, int *first_diff)
{
    for (int s = 1; s < 65; s++) {
        if (s == 32 || s == 33)
            continue; /* glibc-internal, not valid for sigismember */
        if (sigismember(a, s) != sigismember(b, s)) {
            *first_diff = s;
            return 0;
        }
    }
    return 1;
}

static void verify_signals(struct state *st, struct wl_checks *c)
{
    int d = 0;
    sigset_t cur, pend;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    wl_check(c, same_sigmask(&cur, &st->blocked, &d),
             "blocked mask differs at signal %d: expected %d actual %d", d,
             sigismember(&st->blocked, d), sigismember(&cur, d));
    sigpending(&pend);
    wl_check(c, sigismember(&pend, SIGUSR1) == 1,
             "SIGUSR1 pending: expected 1 actual %d", sigismember(&pend, SIGUSR1));
    for (int s = 1; s < 65; s++) {
        if (s == SIGUSR1 || s == SIGALRM || s == 32 || s == 33)
            continue; /* SIGALRM may legitimately be pending for an instant */
        if (sigismember(&pend, s) == 1) {
            wl_check(c, 0, "unexpected pending signal %d", s);
            break;
        }
    }

    struct sigaction a;
    sigaction(SIGUSR1, NULL, &a);
    wl_check(c, a.sa_handler == usr1_handler, "SIGUSR1 handler expected %p actual %p",
             (void *)usr1_handler, (void *)a.sa_handler);
    wl_check(c, a.sa_flags == st->usr1_act.sa_flags && (a.sa_flags & SA_RESTART),
             "SIGUSR1 sa_flags expected 0x%x actual 0x%x", (unsigned)st->usr1_act.sa_flags,
             (unsigned)a.sa_flags);
    wl_check(c, a.sa_restorer == st->usr1_act.sa_restorer,
             "SIGUSR1 sa_restorer expected %p actual %p", (void *)st->usr1_act.sa_restorer,
             (void *)a.sa_restorer);
    wl_check(c, same_sigmask(&a.sa_mask, &st->usr1_act.sa_mask, &d),
             "SIGUSR1 sa_mask differs at signal %d: expected %d actual %d", d,
             sigismember(&st->usr1_act.sa_mask, d), sigismember(&a.sa_mask, d));
    sigaction(SIGTERM, NULL, &a);
    wl_check(c, a.sa_handler == SIG_IGN, "SIGTERM disposition expected SIG_IGN actual %p",
             (void *)a.sa_handler);
    sigaction(SIGALRM, NULL, &a);
    wl_check(c, a.sa_handler == alrm_handler && a.sa_flags == st->alrm_act.sa_flags,
             "SIGALRM action expected handler %p flags 0x%x actual %p 0x%x",
             (void *)alrm_handler, (unsigned)st->alrm_act.sa_flags, (void *)a.sa_handler,
             (unsigned)a.sa_flags);
    /* every other disposition as it was after setup (may be inherited SIG_IGN) */
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == 32 || s == 33)
            continue;
        sigaction(s, NULL, &a);
        if (a.sa_handler != st->all_acts[s].sa_handler ||
            a.sa_flags != st->all_acts[s].sa_flags) {
            wl_check(c, 0, "signal %d disposition expected %p flags 0x%x actual %p flags 0x%x",
                     s, (void *)st->all_acts[s].sa_handler, (unsigned)st->all_acts[s].sa_flags,
                     (void *)a.sa_handler, (unsigned)a.sa_flags);
            break;
        }
    }

    /* deliver the pending SIGUSR1: the handler must run exactly once */
    int before = usr1_count;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    int after = usr1_count;
    sigprocmask(SIG_BLOCK, &one, NULL);
    wl_check(c, after == before + 1,
             "SIGUSR1 handler runs on unblock: expected count %d actual %d", before + 1, after);
    wl_check(c, !usr1_bad_mask, "SIGUSR1 handler ran without SIGUSR1/SIGUSR2/SIGHUP blocked");
    usr1_bad_mask = 0;
    raise(SIGUSR1); /* pending again for the next verify / checkpoint */
    sigpending(&pend);
    wl_check(c, sigismember(&pend, SIGUSR1) == 1 && usr1_count == after,
             "SIGUSR1 re-raise while blocked: expected pending and count %d, actual pending %d "
             "count %d",
             after, sigismember(&pend, SIGUSR1), (int)usr1_count);

    /* interval timer */
    struct itimerval it;
    getitimer(ITIMER_REAL, &it);
    wl_check(c, it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == TIMER_US,
             "ITIMER_REAL interval expected 0.%06d s actual %ld.%06ld s", TIMER_US,
             (long)it.it_interval.tv_sec, (long)it.it_interval.tv_usec);
    wl_check(c,
             (it.it_value.tv_sec > 0 || it.it_value.tv_usec > 0) && it.it_value.tv_sec == 0 &&
                 it.it_value.tv_usec <= TIMER_US,
             "ITIMER_REAL value expected in (0, %d us] actual %ld.%06ld s", TIMER_US,
             (long)it.it_value.tv_sec, (long)it.it_value.tv_usec);
    int t0 = alrm_ticks;
    wl_sleep_ms(300);
    int t1 = alrm_ticks;
    wl_check(c, t1 - t0 >= 3, "SIGALRM ticks over 300 ms: expected >= 3 actual %d", t1 - t0);
}

static int do_verify(struct state *st)
{
    struct wl_checks c;
    wl_checks_init(&c);
    st->verifies++;

    pid_t pid = wl_getpid();
    wl_check(&c, pid == st->pid, "pid expected %d actual %d", (int)st->pid, (int)pid);
    wl_check(&c, getpgrp() == st->pgid, "pgid expected %d actual %d", (int)st->pgid,
             (int)getpgrp());
    wl_check(&c, getsid(0) == st->sid, "sid expected %d actual %d", (int)st->sid,
             (int)getsid(0));
    char comm[17] = "";
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    wl_check(&c, strcmp(comm, st->comm) == 0, "comm expected '%s' actual '%s'", st->comm, comm);
    char cwd[WL_PATH_MAX] = "";
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, "(getcwd failed: %s)", strerror(errno));
    wl_check(&c, strcmp(cwd, st->cwd) == 0, "cwd expected '%s' actual '%s'", st->cwd, cwd);

    if (st->reg_mismatches)
        wl_check(&c, 0, "callee-saved register loop: %lu of %lu loops wrong, first: %s",
                 st->reg_mismatches, st->reg_loops, st->reg_first_bad);
    else
        wl_check(&c, 1, "register loops");
    wl_check(&c, st->reg_loops > st->reg_loops_prev_verify,
             "register loop not running: loops expected > %lu actual %lu",
             st->reg_loops_prev_verify, st->reg_loops);
    st->reg_loops_prev_verify = st->reg_loops;

    int odd_present = 0;
    verify_memory(st, &c, &odd_present);
    verify_fds(st, &c);
    verify_signals(st, &c);

    char summary[512];
    snprintf(summary, sizeof summary,
             "state checks=%d verifies=%d pid=%d reg_loops=%lu reg_iters=%llu usr1=%d "
             "alrm_ticks=%d anon_named=%d odd_pages_present=%d",
             c.total, st->verifies, (int)pid, st->reg_loops, (unsigned long long)st->reg_iters,
             (int)usr1_count, (int)alrm_ticks,
             st->anon_named, odd_present);
    return wl_report(st->ctl, &c, summary);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CTL_DIR\n", argv[0]);
        return 2;
    }
    static struct state st; /* zeroed */
    uint64_t stack_arr[STACK_WORDS];

    st.ctl = argv[1];
    st.page = sysconf(_SC_PAGESIZE);
    st.pid = wl_getpid();
    st.pgid = getpgrp();
    st.sid = getsid(0);
    prctl(PR_GET_NAME, st.comm, 0, 0, 0);
    if (!getcwd(st.cwd, sizeof st.cwd))
        wl_die("getcwd");
    st.stack_arr = stack_arr;

    setup_files(&st);
    setup_memory(&st);
    setup_signals(&st);
    /* calibrate: one loop should busy the CPU for ~5 ms, so a checkpoint
     * taken at a random moment often interrupts it */
    st.reg_iters = 1000000;
    uint64_t t0 = wl_now_ns();
    reg_loop(&st);
    uint64_t dt = wl_now_ns() - t0;
    if (dt == 0)
        dt = 1;
    st.reg_iters = st.reg_iters * REG_LOOP_NS / dt;
    if (st.reg_iters < 100000)
        st.reg_iters = 100000;
    if (st.reg_iters > 200000000)
        st.reg_iters = 200000000;
    reg_loop(&st);
    write_layout(&st);
    wl_ready(st.ctl);

    for (;;) {
        reg_loop(&st);
        wl_sleep_ms(5);
        int req = wl_poll_verify(st.ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        int ok = do_verify(&st);
        if (req == WL_VERIFY_EXIT)
            return ok ? 0 : 1;
    }
}
