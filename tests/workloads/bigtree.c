/* bigtree: 200 processes in many sessions and process groups, with fd tables
 * shared by groups of processes (CLONE_FILES), checking itself.
 *
 * Usage: bigtree CTL_DIR
 *
 * The root (it calls setsid; a session leader already stays one) creates a
 * MAP_SHARED board with one slot per process, then:
 *   - 9 children cloned with CLONE_FILES: with the root, 10 processes using
 *     one fd table;
 *   - 10 session leaders (setsid), each with 9 members: even members lead a
 *     process group of their own, odd ones join the group of the member
 *     before them; each member clones one child with CLONE_FILES, which stays
 *     in its group and shares its fd table.
 * 1 + 9 + 10 * (1 + 9 + 9) = 200 processes. Every process but the root dies
 * with its parent (PR_SET_PDEATHSIG SIGKILL), records its ids in its slot and
 * then counts in it; a process that shares an fd table opens a pipe whose
 * read end it records, and the one it shares the table with checks it sees
 * the same pipe (the fd it names is in its table too).
 * On verify, the root checks for every slot: pid, parent, process group and
 * session as recorded (getpgid/getsid, /proc/PID/stat), the counter
 * advancing, PR_GET_PDEATHSIG, the fd table shared with exactly the
 * processes it was shared with (kcmp KCMP_FILES: same table for the
 * partners, another one for the root's and each session's first member), and
 * the shared-table fd probes each partner made since the verify began.
 */
#define _GNU_SOURCE
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wl_common.h"

#define ROOT_SHARERS 9
#define SESSIONS 10
#define MEMBERS 9
#define NPROC (1 + ROOT_SHARERS + SESSIONS * (1 + 2 * MEMBERS))

struct slot {
    volatile pid_t pid, ppid, pgid, sid;
    volatile int partner;     /* slot whose fd table this one shares, or -1 */
    volatile int probe_fd;    /* a pipe end this process opened in that table */
    volatile long counter;    /* advances while the process runs */
    volatile long probe_gen;  /* last probe generation answered */
    volatile int probe_ok;    /* the partner's fd was seen in this process's table */
    volatile int pdeath;
};

static struct slot *board;
static volatile long *probe_gen;  /* written by the root at each verify */

static pid_t clone_files(void)
{
    return (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, NULL);
}

static int fd_open(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* Every process but the root ends here: ids recorded, then counting and
 * answering probes of the shared fd table. */
static __attribute__((noreturn)) void run_slot(int idx, int partner)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct slot *s = &board[idx];
    s->partner = partner;
    int p[2];
    if (partner >= 0) {
        if (pipe(p) != 0)
            wl_die("pipe");
        s->probe_fd = p[0];
    } else {
        s->probe_fd = -1;
    }
    int sig = 0;
    prctl(PR_GET_PDEATHSIG, &sig);
    s->pdeath = sig;
    s->ppid = getppid();
    s->pgid = getpgid(0);
    s->sid = getsid(0);
    __atomic_store_n(&s->pid, getpid(), __ATOMIC_SEQ_CST);
    for (;;) {
        s->counter++;
        long gen = *probe_gen;
        if (gen != s->probe_gen && partner >= 0) {
            /* The partner's pipe end is in our table: it is one table. */
            s->probe_ok = fd_open(board[partner].probe_fd);
            __atomic_store_n(&s->probe_gen, gen, __ATOMIC_SEQ_CST);
        }
        wl_sleep_ms(20);
    }
}

static int next_slot = 1;

static void session(void)
{
    int leader = next_slot++;
    pid_t l = fork();
    if (l < 0)
        wl_die("fork");
    if (l > 0)
        return;
    if (setsid() < 0)
        wl_die("setsid");
    pid_t group = 0;
    for (int m = 0; m < MEMBERS; m++) {
        int mi = next_slot++, ci = next_slot++;
        pid_t mp = fork();
        if (mp < 0)
            wl_die("fork");
        if (mp == 0) {
            if (setpgid(0, m % 2 == 0 ? 0 : group) != 0)
                wl_die("setpgid");
            pid_t c = clone_files();
            if (c < 0)
                wl_die("clone CLONE_FILES");
            if (c == 0)
                run_slot(ci, mi);
            run_slot(mi, ci);
        }
        if (m % 2 == 0)
            group = mp;
        while (!__atomic_load_n(&board[ci].pid, __ATOMIC_SEQ_CST))
            wl_sleep_ms(1);
    }
    run_slot(leader, -1);
}

static long kcmp_files(pid_t a, pid_t b)
{
    return syscall(SYS_kcmp, a, b, KCMP_FILES, 0, 0);
}

struct expect {
    pid_t pid, ppid, pgid, sid;
};

static struct expect expect[NPROC];
static long counted[NPROC];

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    const pid_t root = getpid();
    wl_check(c, getsid(0) == board[0].sid && getpgid(0) == board[0].pgid, "root sid/pgid expected %d/%d actual %d/%d",
             (int)board[0].sid, (int)board[0].pgid, (int)getsid(0), (int)getpgid(0));
    long gen = ++*probe_gen;
    for (int i = 0; i < NPROC; i++)
        counted[i] = board[i].counter;
    const uint64_t deadline = wl_now_ns() + 10ULL * 1000000000ULL;
    for (int i = 1; i < NPROC; i++)
        while ((board[i].counter == counted[i] || (board[i].partner >= 0 && board[i].probe_gen != gen)) &&
               wl_now_ns() < deadline)
            wl_sleep_ms(5);
    for (int i = 1; i < NPROC; i++) {
        const struct slot *s = &board[i];
        const struct expect *e = &expect[i];
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)e->pid);
        char buf[512] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf - 1);
            buf[n > 0 ? n : 0] = '\0';
            close(fd);
        }
        const char *rp = strrchr(buf, ')');
        int ppid = -1;
        char state = '?';
        if (rp)
            sscanf(rp + 2, "%c %d", &state, &ppid);
        wl_check(c, ppid == e->ppid && getpgid(e->pid) == e->pgid && getsid(e->pid) == e->sid,
                 "slot %d pid %d: ppid/pgid/sid expected %d/%d/%d actual %d/%d/%d", i, (int)e->pid, (int)e->ppid,
                 (int)e->pgid, (int)e->sid, ppid, (int)getpgid(e->pid), (int)getsid(e->pid));
        wl_check(c, s->counter > counted[i], "slot %d pid %d: counter did not advance (%ld)", i, (int)e->pid,
                 s->counter);
        wl_check(c, s->pdeath == SIGKILL, "slot %d: parent-death signal %d", i, s->pdeath);
        if (s->partner >= 0) {
            const pid_t other = expect[s->partner].pid;
            wl_check(c, kcmp_files(e->pid, other) == 0, "slot %d pid %d: fd table not shared with pid %d", i,
                     (int)e->pid, (int)other);
            wl_check(c, s->probe_gen == gen && s->probe_ok, "slot %d pid %d: the fd %d of pid %d is not in its table",
                     i, (int)e->pid, (int)board[s->partner].probe_fd, (int)other);
        }
        /* A table of its own: not the root's (unless one of the root's sharers),
         * not the one of the slot before (unless its partner). */
        const int root_sharer = i <= ROOT_SHARERS;
        wl_check(c, (kcmp_files(e->pid, root) == 0) == root_sharer, "slot %d pid %d: fd table %s the root's", i,
                 (int)e->pid, root_sharer ? "not" : "is");
        if (i > ROOT_SHARERS + 1 && s->partner != i - 1)
            wl_check(c, kcmp_files(e->pid, expect[i - 1].pid) != 0, "slot %d pid %d: fd table shared with pid %d", i,
                     (int)e->pid, (int)expect[i - 1].pid);
    }
    if (exiting)
        for (int i = 1; i < NPROC; i++)
            kill(expect[i].pid, SIGKILL);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    const char *ctl = argv[1];
    void *m = mmap(NULL, sizeof(struct slot) * NPROC + 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        wl_die("mmap board");
    board = m;
    probe_gen = (volatile long *)((char *)m + sizeof(struct slot) * NPROC);
    if (setsid() < 0 && errno != EPERM)
        wl_die("setsid");
    board[0].pid = getpid();
    board[0].pgid = getpgid(0);
    board[0].sid = getsid(0);
    board[0].partner = -1;
    int p[2];
    if (pipe(p) != 0)
        wl_die("pipe");
    board[0].probe_fd = p[0];
    for (int i = 1; i <= ROOT_SHARERS; i++) {
        next_slot++;
        pid_t c = clone_files();
        if (c < 0)
            wl_die("clone CLONE_FILES");
        if (c == 0)
            run_slot(i, 0);
    }
    for (int s = 0; s < SESSIONS; s++) {
        int first = next_slot;
        session();
        next_slot = first + 1 + 2 * MEMBERS;
    }
    const uint64_t deadline = wl_now_ns() + 60ULL * 1000000000ULL;
    for (int i = 1; i < NPROC; i++)
        while (!__atomic_load_n(&board[i].pid, __ATOMIC_SEQ_CST)) {
            if (wl_now_ns() > deadline)
                wl_die("slot %d did not come up", i);
            wl_sleep_ms(2);
        }
    for (int i = 0; i < NPROC; i++)
        expect[i] = (struct expect){board[i].pid, board[i].ppid, board[i].pgid, board[i].sid};
    wl_ready(ctl);
    char summary[64];
    snprintf(summary, sizeof summary, "bigtree verifies %d processes", NPROC);
    wl_serve(ctl, check, NULL, summary);
}
