/* tree: a process tree holding every kind of state the tree restore rebuilds.
 *
 * Usage: tree CTL_DIR [RING]        (RING: processes passing a token, default 4)
 *
 * The root (started as a session and group leader) creates, before forking:
 * a MAP_SHARED|MAP_ANONYMOUS "board" (one slot per process), a file opened
 * O_RDWR whose description (and offset) every child inherits, and RING pipes.
 * Children:
 *   - group leader A (setpgid(0,0)) with a grandchild A1 in A's group (A1
 *     alone maps CTL_DIR/a1.map, privately);
 *   - B, which joins A's group (a group led by another process of the tree);
 *   - a zombie Z that exits 42 and is not reaped until the end;
 *   - RING ring members: member i reads a token (a sequence number) from pipe
 *     i, checks it is the next one, and writes the next to pipe i+1; the root
 *     starts several tokens so that data is always in flight.
 *   - a group whose leader is gone: G leads its own group, forks G1 and exits;
 *     G1 stays in group G (the root is a child subreaper, so G1 becomes its
 *     child);
 *   - a session whose leader is gone: S calls setsid, forks S1 and exits;
 *     S1 stays in session S and group S;
 *   - E, created with exit signal SIGURG instead of SIGCHLD (raw clone);
 *   - P, with parent-death signal SIGTERM.
 * Every child writes its ids and counters into its board slot and appends
 * fixed-size records to the shared file through the shared offset.
 * On verify, the root checks: ids and parents (from /proc and the board),
 * board counters advancing and echoing a generation the root writes (the
 * memory is still shared), ring sequence numbers with no loss or duplicate,
 * the shared offset equal to the file size and to the records counted, and
 * Z still a zombie with status 42.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wl_common.h"

#define MAX_RING 256
#define MAX_SLOTS (MAX_RING + 12)
#define TOKENS 3
#define RECORD 64

struct slot {
    volatile pid_t pid, ppid, pgid, sid;
    volatile long counter;        /* advances while the process runs */
    volatile long seen_gen;       /* last generation echoed from the root */
    volatile long records;        /* records appended to the shared file */
    volatile long tokens;         /* ring: tokens passed */
    volatile long errors;         /* ring: sequence errors */
    volatile int pdeath;          /* PR_GET_PDEATHSIG */
    char what[128];
};

static struct slot *board;
static volatile long *generation;
static int shared_fd;
static int ring;

static void append_record(int idx)
{
    char rec[RECORD];
    memset(rec, ' ', sizeof rec);
    snprintf(rec, sizeof rec, "slot %d record %ld", idx, board[idx].records);
    rec[RECORD - 1] = '\n';
    if (wl_write_all(shared_fd, rec, sizeof rec) == 0)
        board[idx].records++;
}

static void fill_ids(int idx)
{
    board[idx].pid = getpid();
    board[idx].ppid = getppid();
    board[idx].pgid = getpgid(0);
    board[idx].sid = getsid(0);
    int sig = 0;
    prctl(PR_GET_PDEATHSIG, &sig);
    board[idx].pdeath = sig;
}

static void child_tick(int idx)
{
    board[idx].counter++;
    board[idx].seen_gen = *generation;
    if (board[idx].counter % 20 == 0)
        append_record(idx);
}

static void plain_child(int idx)
{
    for (;;) {
        fill_ids(idx);
        child_tick(idx);
        wl_sleep_ms(5);
    }
}

/* Ring member i: reads from pipes[i][0], writes to pipes[(i+1)%ring][1]. */
static void ring_member(int idx, int i, int (*pipes)[2])
{
    for (int j = 0; j < ring; j++) {
        if (j != i)
            close(pipes[j][0]);
        if (j != (i + 1) % ring)
            close(pipes[j][1]);
    }
    long expect[TOKENS] = {0};
    for (;;) {
        fill_ids(idx);
        long tok[2]; /* token id, sequence */
        ssize_t n = read(pipes[i][0], tok, sizeof tok);
        if (n != sizeof tok) {
            board[idx].errors++;
            snprintf(board[idx].what, sizeof board[idx].what, "short read %zd", n);
            wl_sleep_ms(10);
            continue;
        }
        int t = (int)tok[0];
        if (t < 0 || t >= TOKENS || (expect[t] && tok[1] != expect[t])) {
            board[idx].errors++;
            snprintf(board[idx].what, sizeof board[idx].what, "token %d seq %ld expected %ld", t, tok[1],
                     t >= 0 && t < TOKENS ? expect[t] : -1);
        }
        if (t >= 0 && t < TOKENS)
            expect[t] = tok[1] + ring;
        tok[1]++;
        board[idx].tokens++;
        child_tick(idx);
        wl_sleep_ms(1);
        if (wl_write_all(pipes[(i + 1) % ring][1], tok, sizeof tok) != 0) {
            board[idx].errors++;
            snprintf(board[idx].what, sizeof board[idx].what, "write failed");
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR [RING]", argv[0]);
    const char *ctl = argv[1];
    ring = argc > 2 ? atoi(argv[2]) : 4;
    if (ring < 1 || ring > MAX_RING)
        wl_die("RING must be 1..%d", MAX_RING);
    size_t board_len = (MAX_SLOTS + 1) * sizeof(struct slot);
    board = mmap(NULL, board_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        wl_die("mmap board");
    generation = (volatile long *)&board[MAX_SLOTS];
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, ctl, "shared.log");
    shared_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (shared_fd < 0)
        wl_die("open %s", path);
    static int pipes[MAX_RING][2];
    for (int i = 0; i < ring; i++)
        if (pipe(pipes[i]) != 0)
            wl_die("pipe");

    const pid_t root = getpid();
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        wl_die("PR_SET_CHILD_SUBREAPER");
    fill_ids(0);
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        pid_t a1 = fork();
        if (a1 == 0) {
            /* A private file mapping only A1 has (a restore test changes the
             * file to make A1's restore fail in the middle of the tree). */
            char mp[WL_PATH_MAX];
            wl_path(mp, sizeof mp, ctl, "a1.map");
            int mfd = open(mp, O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (mfd < 0 || ftruncate(mfd, 4096) != 0)
                wl_die("create %s", mp);
            if (mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, mfd, 0) == MAP_FAILED)
                wl_die("mmap %s", mp);
            close(mfd);
            plain_child(2);
        }
        plain_child(1);
    }
    setpgid(a, a);
    pid_t b = fork();
    if (b == 0) {
        setpgid(0, a);
        plain_child(3);
    }
    setpgid(b, a);
    pid_t z = fork();
    if (z == 0)
        _exit(42);
    /* Slots after the ring: G1, S1, E, P. */
    const int g1_slot = 5 + ring, s1_slot = 6 + ring, e_slot = 7 + ring, p_slot = 8 + ring;
    pid_t g = fork();
    if (g == 0) {
        setpgid(0, 0);
        if (fork() == 0)
            plain_child(g1_slot);
        _exit(0);
    }
    pid_t sl = fork();
    if (sl == 0) {
        setsid();
        if (fork() == 0)
            plain_child(s1_slot);
        _exit(0);
    }
    if (waitpid(g, NULL, 0) != g || waitpid(sl, NULL, 0) != sl)
        wl_die("waitpid of the group and session leaders");
    pid_t e = (pid_t)syscall(SYS_clone, SIGURG, NULL, NULL, NULL, NULL);
    if (e == 0)
        plain_child(e_slot);
    pid_t pd = fork();
    if (pd == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        plain_child(p_slot);
    }
    pid_t members[MAX_RING];
    for (int i = 0; i < ring; i++) {
        members[i] = fork();
        if (members[i] == 0)
            ring_member(5 + i, i, pipes);
    }
    for (int i = 0; i < ring; i++) {
        close(pipes[i][0]);
        if (i != 0)
            close(pipes[i][1]);
    }
    for (long t = 0; t < TOKENS; t++) {
        long tok[2] = {t, 1};
        wl_write_all(pipes[0][1], tok, sizeof tok);
    }
    close(pipes[0][1]);
    /* Wait until everyone is up and the zombie is a zombie. */
    for (int spins = 0;; spins++) {
        int up = board[1].pid && board[2].pid && board[3].pid && board[g1_slot].ppid == root &&
                 board[s1_slot].ppid == root && board[e_slot].pid && board[p_slot].pdeath == SIGTERM;
        for (int i = 0; i < ring; i++)
            up &= board[5 + i].pid != 0;
        siginfo_t si = {0};
        waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT | WNOHANG);
        if (up && si.si_pid == z)
            break;
        if (spins > 5000)
            wl_die("tree did not come up");
        wl_sleep_ms(2);
    }
    const pid_t g1 = board[g1_slot].pid, s1 = board[s1_slot].pid;
    wl_ready(ctl);

    int verifies = 0;
    for (;;) {
        wl_sleep_ms(10);
        fill_ids(0);
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        verifies++;
        struct wl_checks c;
        wl_checks_init(&c);
        wl_check(&c, getpid() == root, "root pid expected %d actual %d", (int)root, (int)getpid());
        wl_check(&c, getsid(0) == root && getpgid(0) == root, "root sid/pgid expected %d actual %d/%d", (int)root,
                 (int)getsid(0), (int)getpgid(0));
        long before[MAX_SLOTS];
        for (int i = 0; i < 9 + ring; i++)
            before[i] = board[i].counter;
        long gen = ++*generation;
        /* Wait (bounded) until every slot has ticked and echoed the generation.
         * A ring member ticks only when a token reaches it, and 200 members on a
         * loaded 2-core machine just after a restore can take well over 400 ms
         * to pass the tokens around; a fixed wait made this check flaky. */
        for (int waited = 0; waited < 10000; waited += 20) {
            int all = 1;
            for (int i = 1; i < 9 + ring && all; i++)
                if (i != 4 && (board[i].counter <= before[i] || board[i].seen_gen != gen))
                    all = 0;
            if (all && waited >= 100)
                break;
            wl_sleep_ms(20);
        }
        struct { int slot; pid_t pid; pid_t ppid; pid_t pgid; pid_t sid; } expect[MAX_SLOTS];
        int n = 0;
        expect[n++] = (typeof(expect[0])){1, a, root, a, root};
        expect[n++] = (typeof(expect[0])){2, board[2].pid, a, a, root};
        expect[n++] = (typeof(expect[0])){3, b, root, a, root};
        for (int i = 0; i < ring; i++)
            expect[n++] = (typeof(expect[0])){5 + i, members[i], root, root, root};
        expect[n++] = (typeof(expect[0])){g1_slot, g1, root, g, root};
        expect[n++] = (typeof(expect[0])){s1_slot, s1, root, sl, sl};
        expect[n++] = (typeof(expect[0])){e_slot, e, root, root, root};
        expect[n++] = (typeof(expect[0])){p_slot, pd, root, root, root};
        for (int k = 0; k < n; k++) {
            struct slot *s = &board[expect[k].slot];
            int idx = expect[k].slot;
            wl_check(&c, s->pid == expect[k].pid && s->ppid == expect[k].ppid && s->pgid == expect[k].pgid &&
                             s->sid == expect[k].sid,
                     "slot %d ids pid/ppid/pgid/sid expected %d/%d/%d/%d actual %d/%d/%d/%d", idx,
                     (int)expect[k].pid, (int)expect[k].ppid, (int)expect[k].pgid, (int)expect[k].sid, (int)s->pid,
                     (int)s->ppid, (int)s->pgid, (int)s->sid);
            wl_check(&c, s->counter > before[idx], "slot %d counter did not advance (%ld)", idx, s->counter);
            wl_check(&c, s->seen_gen == gen, "slot %d did not see generation %ld (saw %ld): memory not shared", idx,
                     gen, s->seen_gen);
            wl_check(&c, s->errors == 0, "slot %d: %ld ring errors, last: %s", idx, s->errors, s->what);
        }
        long tokens = 0, records = 0;
        for (int i = 0; i < ring; i++)
            tokens += board[5 + i].tokens;
        for (int i = 0; i < 9 + ring; i++)
            records += board[i].records;
        wl_check(&c, board[p_slot].pdeath == SIGTERM && board[1].pdeath == 0,
                 "parent-death signals expected %d/0 actual %d/%d", SIGTERM, board[p_slot].pdeath, board[1].pdeath);
        char statp[64], statbuf[1024] = "";
        snprintf(statp, sizeof statp, "/proc/%d/stat", (int)e);
        FILE *sf = fopen(statp, "r");
        if (sf) {
            if (!fgets(statbuf, sizeof statbuf, sf))
                statbuf[0] = 0;
            fclose(sf);
        }
        const char *rp = strrchr(statbuf, ')');
        int field = 2, exit_sig = -1;
        for (const char *q = rp; q && *q; q++)
            if (*q == ' ' && ++field == 38) {
                exit_sig = atoi(q + 1);
                break;
            }
        wl_check(&c, exit_sig == SIGURG, "exit signal of pid %d expected %d actual %d", (int)e, SIGURG, exit_sig);
        wl_check(&c, tokens > 0, "no ring tokens passed");
        off_t off = lseek(shared_fd, 0, SEEK_CUR);
        struct stat st;
        fstat(shared_fd, &st);
        /* The file's content is not in the image: an instance that ran on after
         * the dump (leave-running, rewind) may have made it longer. */
        wl_check(&c, off <= st.st_size, "shared offset %ld beyond the file size %ld", (long)off, (long)st.st_size);
        wl_check(&c, off % RECORD == 0 && off / RECORD >= records - 8 && off / RECORD <= records + 9 + ring,
                 "shared file holds %ld records, the board counts %ld", (long)(off / RECORD), records);
        siginfo_t si = {0};
        int wr = waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT | WNOHANG);
        wl_check(&c, wr == 0 && si.si_pid == z && si.si_code == CLD_EXITED && si.si_status == 42,
                 "zombie %d: waitid %d pid %d code %d status %d", (int)z, wr, (int)si.si_pid, si.si_code,
                 si.si_status);
        char summary[160];
        snprintf(summary, sizeof summary, "tree ring=%d tokens=%ld records=%ld verifies=%d", ring, tokens, records,
                 verifies);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            pid_t all[8 + MAX_RING] = {a, board[2].pid, b, g1, s1, e, pd};
            int na = 7;
            for (int i = 0; i < ring; i++)
                all[na++] = members[i];
            for (int i = 0; i < na; i++)
                kill(all[i], SIGKILL);
            for (int i = 0; i < na; i++)
                if (all[i] != board[2].pid)
                    waitpid(all[i], NULL, __WALL);
            waitpid(z, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
