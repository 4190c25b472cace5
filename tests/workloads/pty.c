/* pty: a tree that owns a pseudoterminal, like a terminal emulator (or
 * `script`, tmux, sshd) with a shell running a foreground job in it.
 *
 * Usage: pty CTL_DIR          the tree (below)
 *        pty CTL_DIR job      a job started by a shell on its terminal (--shell-job)
 *
 * Tree mode:
 *   A (root) opens /dev/ptmx, sets the slave's termios (no ECHOCTL, VINTR ^X,
 *     9600 baud), the window size (37x123, 800x600 pixels), exclusive mode and
 *     packet mode, and keeps a second description of the slave. Once every
 *     process has its fds it locks the pty (TIOCSPTLCK: no more opens).
 *   B (the "shell") calls setsid, takes the slave as its controlling terminal
 *     (TIOCSCTTY) on fds 0-2, starts C in its own process group, gives it the
 *     foreground (tcsetpgrp) and waits for it.
 *   C (the foreground job) opens /dev/tty (and keeps it), writes
 *   "child-ready\n" and waits for SIGUSR1.
 *   Then A types "hello tty\npartial" on the master. At `ready` both queues
 *   hold bytes nobody has read: "child-ready\r\n" plus the echo for the master,
 *   a complete line and an unfinished one for the slave.
 * First verify (A): the settings, the session (TIOCGSID), the foreground group
 *   (TIOCGPGRP), the controlling terminal of B and C (/proc tty_nr, tpgid),
 *   that the slave description is the master's peer, and the exact bytes in
 *   flight on the master, and that no packet-mode status byte ever came (cryo
 *   changes termios while it copies the queues); then it wakes C, which must read "hello tty\n", and
 *   types "-done\n", which must finish C's unfinished line as "partial-done\n".
 *   C checks its side (controlling terminal, session, foreground, its /dev/tty
 *   fd still on the pty, its fd 0 shared with B's) and answers "C-OK ..." or "C-FAIL ..." through
 *   the terminal. Later verifies: A types "ping N /dev/pts/M", C answers.
 *   The OK line names the pts number at the start and now ("index 3->3").
 *
 * Job mode: stdin/stdout/stderr are the terminal of the shell that started
 *   it (as the foreground job). It turns ECHO off (like a password prompt)
 *   and keeps an fd on /dev/tty. verify: it is still the foreground of a
 *   terminal on fds 0-2 with ECHO off, its /dev/tty fd and a new open of
 *   /dev/tty are that terminal, it is not a session leader; it prints "job-ping N" on
 *   the terminal and must read "job-pong N" typed there within 10 s. The OK
 *   line tells the window size and how many SIGWINCH came.
 *   On exit it turns ECHO back on.
 * With WL_PTMX set (a devpts instance's ptmx node, e.g. DIR/ptmx of
 *   `mount -t devpts -o newinstance,ptmxmode=0666 devpts DIR`), tree mode
 *   opens the pty there and names its slave DIR/N.
 * Protocol: wl_common.h.
 */
#define _GNU_SOURCE
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

#include "wl_common.h"

#define IN_FLIGHT_MASTER "child-ready\r\nhello tty\r\npartial"

static int master = -1, a_slave = -1, devtty = -1;
static int packet_status; /* a status byte read from the master in packet mode */
static pid_t b_pid, c_pid;
static unsigned first_index;
static char pts_dir[200] = "/dev/pts"; /* where the slave is: dirname of WL_PTMX */
static int in_flight_checked;
static int pings;

/* ---- helpers ----------------------------------------------------------- */

static unsigned pty_index(int fd)
{
    unsigned n = 0;
    if (ioctl(fd, TIOCGPTN, &n) != 0)
        return ~0u;
    return n;
}

/* /proc/PID/stat fields 7 (tty_nr) and 8 (tpgid). */
static int stat_tty(pid_t pid, int *tty_nr, int *tpgid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char state;
    int ppid, pgrp, sid;
    if (sscanf(p + 2, "%c %d %d %d %d %d", &state, &ppid, &pgrp, &sid, tty_nr, tpgid) != 6)
        return -1;
    return 0;
}

/* One read(2) of the master in packet mode: a status byte alone, or
 * TIOCPKT_DATA (0) and data. Returns the data bytes. */
static ssize_t read_packet(char *buf, size_t n)
{
    char tmp[8193];
    if (n > sizeof tmp - 1)
        n = sizeof tmp - 1;
    ssize_t r = read(master, tmp, n + 1);
    if (r <= 0)
        return r;
    if (tmp[0] != TIOCPKT_DATA) {
        packet_status = (unsigned char)tmp[0];
        return 0;
    }
    memcpy(buf, tmp + 1, (size_t)r - 1);
    return r - 1;
}

/* Reads from the master until `n` bytes came (or 3 s passed). */
static size_t read_master(char *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = wl_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    while (got < n && wl_now_ns() < deadline) {
        struct pollfd p = { master, POLLIN, 0 };
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t r = read_packet(buf + got, n - got);
        if (r > 0)
            got += (size_t)r;
        else if (r < 0 && errno != EINTR && errno != EAGAIN)
            break;
    }
    return got;
}

/* Reads from the master until a line starting with "C-" is complete; copies
 * it (without "\r\n") into out. Returns 0 on success. */
static int read_reply(char *out, size_t outsz, char *seen, size_t seensz)
{
    size_t len = 0;
    seen[0] = '\0';
    uint64_t deadline = wl_now_ns() + 5000000000ULL;
    while (wl_now_ns() < deadline && len + 1 < seensz) {
        struct pollfd p = { master, POLLIN, 0 };
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t r = read_packet(seen + len, seensz - 1 - len);
        if (r <= 0)
            continue;
        len += (size_t)r;
        seen[len] = '\0';
        char *c = strstr(seen, "C-");
        char *end = c ? strstr(c, "\r\n") : NULL;
        if (end) {
            size_t l = (size_t)(end - c);
            if (l >= outsz)
                l = outsz - 1;
            memcpy(out, c, l);
            out[l] = '\0';
            return 0;
        }
    }
    return -1;
}

/* Escapes control characters for a report line. */
static void printable(char *out, size_t outsz, const char *in, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r')
            o += (size_t)snprintf(out + o, outsz - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, outsz - o, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* ---- C: the foreground job ------------------------------------------------ */

static volatile sig_atomic_t woken;
static void on_usr1(int sig) { (void)sig; woken = 1; }

/* Reads one line from the terminal (canonical mode: one read). */
static ssize_t read_line(char *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(0, buf, n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r >= 0)
            buf[r] = '\0';
        return r;
    }
}

static void c_check_common(struct wl_checks *c)
{
    pid_t ppid = getppid();
    wl_check(c, getsid(0) == ppid, "C: session %d, expected B %d", (int)getsid(0), (int)ppid);
    wl_check(c, tcgetsid(0) == getsid(0), "C: tcgetsid %d, session %d", (int)tcgetsid(0), (int)getsid(0));
    wl_check(c, getpgrp() == getpid(), "C: pgrp %d, expected own %d", (int)getpgrp(), (int)getpid());
    wl_check(c, tcgetpgrp(0) == getpgrp(), "C: foreground %d, expected %d", (int)tcgetpgrp(0), (int)getpgrp());
    /* The pty is locked: /dev/tty cannot be opened again, the kept fd works. */
    struct stat dst, st0;
    unsigned dev = 0;
    wl_check(c, fstat(devtty, &dst) == 0 && dst.st_rdev == makedev(5, 0) && fstat(0, &st0) == 0 &&
                    ioctl(devtty, TIOCGDEV, &dev) == 0 && (dev_t)dev == st0.st_rdev,
             "C: the /dev/tty fd is on %#x, fd 0 on %#x", dev, (unsigned)st0.st_rdev);
    wl_check(c, tcgetpgrp(devtty) == getpgrp(), "C: foreground through /dev/tty %d", (int)tcgetpgrp(devtty));
    long same = syscall(SYS_kcmp, getpid(), ppid, KCMP_FILE, 0, 0);
    wl_check(c, same == 0, "C: fd 0 is not B's description (kcmp %ld)", same);
    int mine = 0, mine_pg = 0, b_tty = 0, b_pg = 0;
    wl_check(c, stat_tty(getpid(), &mine, &mine_pg) == 0 && stat_tty(ppid, &b_tty, &b_pg) == 0, "C: /proc stat");
    wl_check(c, mine != 0 && mine == b_tty, "C: tty_nr %#x, B's %#x", mine, b_tty);
    wl_check(c, mine_pg == getpid() && b_pg == getpid(), "C: tpgid %d and B's %d, expected %d", mine_pg, b_pg,
             (int)getpid());
    struct stat st;
    wl_check(c, fstat(0, &st) == 0 && (int)st.st_rdev == mine, "C: fd 0 device %#x, ctty %#x",
             (unsigned)st.st_rdev, mine);
}

static void c_reply(struct wl_checks *c, const char *what)
{
    char line[WL_MSG_MAX + 64];
    if (c->failed == 0)
        snprintf(line, sizeof line, "C-OK %s\n", what);
    else
        snprintf(line, sizeof line, "C-FAIL %s: %s\n", what, c->msg);
    for (char *p = line; p[1]; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    wl_write_all(1, line, strlen(line));
}

static void run_c(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    for (int i = 0; i < 1000 && tcgetpgrp(0) != getpgrp(); i++)
        wl_sleep_ms(2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    devtty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (devtty < 0)
        _exit(20);
    wl_write_all(1, "child-ready\n", 12);
    while (!woken)
        pause();
    char buf[4096];
    struct wl_checks c;
    wl_checks_init(&c);
    ssize_t n = read_line(buf, sizeof buf);
    wl_check(&c, n == 10 && strcmp(buf, "hello tty\n") == 0, "first line read %zd bytes '%.40s'", n,
             n > 0 ? buf : "");
    n = read_line(buf, sizeof buf);
    wl_check(&c, n == 13 && strcmp(buf, "partial-done\n") == 0, "unfinished line read %zd bytes '%.40s'", n,
             n > 0 ? buf : "");
    c_check_common(&c);
    c_reply(&c, "in-flight");
    for (;;) {
        n = read_line(buf, sizeof buf);
        if (n <= 0)
            _exit(3);
        wl_checks_init(&c);
        int num = 0;
        char path[256] = "";
        wl_check(&c, sscanf(buf, "ping %d %255s", &num, path) == 2, "bad line '%.40s'", buf);
        const char *name = ttyname(0);
        wl_check(&c, name && strcmp(name, path) == 0, "C: ttyname %s, master's slave %s", name ? name : "(none)",
                 path);
        c_check_common(&c);
        char what[64];
        snprintf(what, sizeof what, "pong %d", num);
        c_reply(&c, what);
    }
}

/* ---- B: the shell ------------------------------------------------------- */

static void run_b(const char *slave_path)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(master);
    close(a_slave);
    if (setsid() < 0)
        _exit(10);
    int fd = open(slave_path, O_RDWR);
    if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) != 0)
        _exit(11);
    for (int i = 0; i <= 2; i++)
        if (dup2(fd, i) < 0)
            _exit(12);
    if (fd > 2)
        close(fd);
    pid_t c = fork();
    if (c < 0)
        _exit(13);
    if (c == 0)
        run_c();
    setpgid(c, c);
    signal(SIGTTOU, SIG_IGN);
    if (tcsetpgrp(0, c) != 0)
        _exit(14);
    signal(SIGTTOU, SIG_DFL);
    for (;;) {
        int st;
        pid_t r = waitpid(c, &st, 0);
        if (r == c)
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        if (r < 0 && errno != EINTR)
            _exit(15);
    }
}

/* ---- A: the terminal emulator ------------------------------------------- */

static void wait_master_bytes(int want)
{
    for (int i = 0; i < 2000; i++) {
        struct pollfd p = { master, POLLIN, 0 };
        poll(&p, 1, 5); /* pushes the flip buffer into the line discipline */
        int n = 0;
        if (ioctl(master, FIONREAD, &n) == 0 && n >= want)
            return;
        wl_sleep_ms(1);
    }
    wl_die("the master never had %d bytes to read", want);
}

static void setup_tree(void)
{
    const char *ptmx = getenv("WL_PTMX");
    if (ptmx) {
        master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || unlockpt(master) != 0)
            wl_die("open %s", ptmx);
        snprintf(pts_dir, sizeof pts_dir, "%.*s", (int)(strrchr(ptmx, '/') - ptmx), ptmx);
    } else {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
            wl_die("posix_openpt");
    }
    first_index = pty_index(master);
    char slave_path[256];
    snprintf(slave_path, sizeof slave_path, "%s/%u", pts_dir, first_index);
    a_slave = open(slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (a_slave < 0)
        wl_die("open %s", slave_path);
    struct termios t;
    if (tcgetattr(a_slave, &t) != 0)
        wl_die("tcgetattr");
    t.c_lflag &= ~(tcflag_t)ECHOCTL;
    t.c_cc[VINTR] = 0x18;
    cfsetispeed(&t, B9600);
    cfsetospeed(&t, B9600);
    if (tcsetattr(a_slave, TCSANOW, &t) != 0)
        wl_die("tcsetattr");
    struct winsize w = { 37, 123, 800, 600 };
    if (ioctl(master, TIOCSWINSZ, &w) != 0)
        wl_die("TIOCSWINSZ");
    if (ioctl(a_slave, TIOCEXCL) != 0)
        wl_die("TIOCEXCL");
    int one = 1;
    if (ioctl(master, TIOCPKT, &one) != 0)
        wl_die("TIOCPKT");
    b_pid = fork();
    if (b_pid < 0)
        wl_die("fork");
    if (b_pid == 0)
        run_b(slave_path);
    /* C is the foreground group once B made it so. */
    for (int i = 0; i < 2000; i++) {
        pid_t fg = 0;
        if (ioctl(master, TIOCGPGRP, &fg) == 0 && fg != b_pid && fg > 0) {
            c_pid = fg;
            break;
        }
        wl_sleep_ms(5);
    }
    if (!c_pid)
        wl_die("no foreground job");
    wait_master_bytes(13); /* "child-ready\r\n" */
    const char typed[] = "hello tty\npartial";
    if (wl_write_all(master, typed, sizeof typed - 1) != 0)
        wl_die("typing on the master");
    wait_master_bytes((int)strlen(IN_FLIGHT_MASTER)); /* and the echo */
    if (ioctl(master, TIOCSPTLCK, &one) != 0)
        wl_die("TIOCSPTLCK");
}

static void check_terminal(struct wl_checks *c, unsigned idx)
{
    struct termios t;
    wl_check(c, tcgetattr(master, &t) == 0, "tcgetattr on the master: %s", strerror(errno));
    wl_check(c, !(t.c_lflag & ECHOCTL) && (t.c_lflag & ECHO) && (t.c_lflag & ICANON), "lflag %#x",
             (unsigned)t.c_lflag);
    wl_check(c, t.c_cc[VINTR] == 0x18, "VINTR %#x, expected 0x18", t.c_cc[VINTR]);
    wl_check(c, cfgetospeed(&t) == B9600 && cfgetispeed(&t) == B9600, "speeds %u/%u, expected B9600",
             (unsigned)cfgetispeed(&t), (unsigned)cfgetospeed(&t));
    struct winsize w;
    wl_check(c, ioctl(master, TIOCGWINSZ, &w) == 0 && w.ws_row == 37 && w.ws_col == 123 && w.ws_xpixel == 800 &&
                    w.ws_ypixel == 600,
             "window %ux%u %ux%u, expected 37x123 800x600", w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel);
    int excl = 0, lock = 0, pkt = 0;
    wl_check(c, ioctl(a_slave, TIOCGEXCL, &excl) == 0 && excl == 1, "exclusive mode %d", excl);
    wl_check(c, ioctl(master, TIOCGPTLCK, &lock) == 0 && lock == 1, "locked %d", lock);
    wl_check(c, ioctl(master, TIOCGPKT, &pkt) == 0 && pkt == 1, "packet mode %d", pkt);
    wl_check(c, packet_status == 0, "packet-mode status byte %#x came from the master", packet_status);
    struct stat st;
    wl_check(c, fstat(a_slave, &st) == 0 && major(st.st_rdev) == 136 && minor(st.st_rdev) == idx,
             "A's slave fd is %u:%u, the master's peer is 136:%u", major(st.st_rdev), minor(st.st_rdev), idx);
    pid_t sid = 0, fg = 0;
    wl_check(c, ioctl(master, TIOCGSID, &sid) == 0 && sid == b_pid, "TIOCGSID %d, expected B %d", (int)sid,
             (int)b_pid);
    wl_check(c, ioctl(master, TIOCGPGRP, &fg) == 0 && fg == c_pid, "TIOCGPGRP %d, expected C %d", (int)fg,
             (int)c_pid);
    const int want = (int)makedev(136, idx);
    int b_tty = 0, b_pg = 0, c_tty = 0, c_pg = 0;
    wl_check(c, stat_tty(b_pid, &b_tty, &b_pg) == 0 && b_tty == want && b_pg == c_pid,
             "B: tty_nr %#x tpgid %d, expected %#x %d", b_tty, b_pg, want, (int)c_pid);
    wl_check(c, stat_tty(c_pid, &c_tty, &c_pg) == 0 && c_tty == want, "C: tty_nr %#x, expected %#x", c_tty, want);
    int a_tty = -1, a_pg = 0;
    wl_check(c, stat_tty(getpid(), &a_tty, &a_pg) == 0 && a_tty == 0, "A has a controlling terminal %#x", a_tty);
}

static int verify_tree(const char *ctl)
{
    struct wl_checks c;
    wl_checks_init(&c);
    const unsigned idx = pty_index(master);
    check_terminal(&c, idx);
    char reply[512] = "", seen[8192];
    if (!in_flight_checked) {
        char got[256], shown[1024];
        const size_t want = strlen(IN_FLIGHT_MASTER);
        size_t n = read_master(got, want, 3000);
        printable(shown, sizeof shown, got, n);
        wl_check(&c, n == want && memcmp(got, IN_FLIGHT_MASTER, want) == 0,
                 "bytes in flight to the master: '%s' (%zu), expected '%s'", shown, n,
                 "child-ready\\r\\nhello tty\\r\\npartial");
        n = read_master(got, sizeof got, 100);
        printable(shown, sizeof shown, got, n);
        wl_check(&c, n == 0, "more bytes in flight to the master: '%s'", shown);
        kill(c_pid, SIGUSR1);
        wl_sleep_ms(50);
        wl_write_all(master, "-done\n", 6);
        in_flight_checked = 1;
    } else {
        char line[300];
        snprintf(line, sizeof line, "ping %d %s/%u\n", ++pings, pts_dir, idx);
        wl_write_all(master, line, strlen(line));
    }
    if (read_reply(reply, sizeof reply, seen, sizeof seen) != 0) {
        char shown[2048];
        printable(shown, sizeof shown, seen, strlen(seen));
        wl_check(&c, 0, "no answer from C; the master showed '%s'", shown);
    } else {
        wl_check(&c, strncmp(reply, "C-OK", 4) == 0, "%s", reply);
    }
    char summary[700];
    snprintf(summary, sizeof summary, "pty index %u->%u, session %d, foreground %d, %s", first_index, idx,
             (int)b_pid, (int)c_pid, reply);
    return wl_report(ctl, &c, summary);
}

/* ---- job mode ------------------------------------------------------------ */

static struct termios job_saved;
static volatile sig_atomic_t winches;
static void on_winch(int sig) { (void)sig; winches++; }

static int verify_job(const char *ctl)
{
    struct wl_checks c;
    wl_checks_init(&c);
    for (int i = 0; i <= 2; i++)
        wl_check(&c, isatty(i), "fd %d is not a terminal", i);
    wl_check(&c, tcgetpgrp(0) == getpgrp(), "foreground group %d, mine %d", (int)tcgetpgrp(0), (int)getpgrp());
    wl_check(&c, getsid(0) != getpid(), "the job leads its session %d", (int)getsid(0));
    struct termios t;
    wl_check(&c, tcgetattr(0, &t) == 0 && !(t.c_lflag & ECHO) && (t.c_lflag & ICANON), "lflag %#x, expected ECHO off",
             (unsigned)t.c_lflag);
    struct stat st0, dst;
    unsigned dev = 0, dev2 = 0;
    wl_check(&c, fstat(devtty, &dst) == 0 && dst.st_rdev == makedev(5, 0), "the kept /dev/tty fd is %#x, not 5:0",
             (unsigned)dst.st_rdev);
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    wl_check(&c, fd >= 0 && ioctl(fd, TIOCGDEV, &dev2) == 0, "open /dev/tty: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    wl_check(&c, fstat(0, &st0) == 0 && ioctl(devtty, TIOCGDEV, &dev) == 0 && (dev_t)dev == st0.st_rdev &&
                     dev2 == dev,
             "the kept /dev/tty fd is on %#x, a new one on %#x, fd 0 on %#x", dev, dev2, (unsigned)st0.st_rdev);
    char line[64], want[64], buf[256];
    snprintf(line, sizeof line, "job-ping %d\n", ++pings);
    snprintf(want, sizeof want, "job-pong %d\n", pings);
    wl_write_all(1, line, strlen(line));
    struct pollfd p = { 0, POLLIN, 0 };
    ssize_t n = -1;
    if (poll(&p, 1, 10000) == 1)
        n = read(0, buf, sizeof buf - 1);
    if (n >= 0)
        buf[n] = '\0';
    wl_check(&c, n > 0 && strcmp(buf, want) == 0, "read '%.60s' (%zd), expected '%.20s'", n > 0 ? buf : "", n, want);
    const char *name = ttyname(0);
    char summary[256];
    struct winsize w = { 0, 0, 0, 0 };
    ioctl(0, TIOCGWINSZ, &w);
    snprintf(summary, sizeof summary, "job on %s, session %d, group %d, ping %d, window %ux%u, SIGWINCH %d",
             name ? name : "?", (int)getsid(0), (int)getpgrp(), pings, w.ws_row, w.ws_col, (int)winches);
    return wl_report(ctl, &c, summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pty CTL_DIR [job]\n");
        return 2;
    }
    const int job = argc > 2 && strcmp(argv[2], "job") == 0;
    if (job) {
        if (tcgetattr(0, &job_saved) != 0)
            wl_die("tcgetattr on stdin");
        struct termios t = job_saved;
        t.c_lflag &= ~(tcflag_t)ECHO;
        if (tcsetattr(0, TCSANOW, &t) != 0)
            wl_die("tcsetattr on stdin");
        devtty = open("/dev/tty", O_RDWR | O_CLOEXEC);
        if (devtty < 0)
            wl_die("open /dev/tty");
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_winch;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGWINCH, &sa, NULL);
    } else {
        setup_tree();
    }
    wl_ready(argv[1]);
    for (;;) {
        int req = wl_poll_verify(argv[1]);
        if (req != WL_VERIFY_NONE) {
            int ok = job ? verify_job(argv[1]) : verify_tree(argv[1]);
            if (req == WL_VERIFY_EXIT) {
                if (job) {
                    tcsetattr(0, TCSANOW, &job_saved);
                } else {
                    kill(c_pid, SIGKILL);
                    kill(b_pid, SIGKILL);
                    waitpid(b_pid, NULL, 0);
                }
                return ok ? 0 : 1;
            }
        }
        wl_sleep_ms(10);
    }
}
