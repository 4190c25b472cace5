/* eventfds: event-like fds and POSIX timers, for cryo's end-to-end tests.
 *
 * Holds:
 *   - an eventfd with count 7 (non-blocking) and one in semaphore mode with 3;
 *   - a periodic timerfd (CLOCK_MONOTONIC, 100 ms), a one-shot timerfd that
 *     expired once and was never read (1 tick pending), and an absolute
 *     CLOCK_REALTIME timerfd 1000 s ahead;
 *   - a signalfd for SIGUSR2, with SIGUSR2 blocked and one queued (sigqueue,
 *     value 0x5150);
 *   - an epoll watching the first eventfd and the periodic timerfd with
 *     specific data values;
 *   - an inotify watching <ctl>/watched (wd 1) and <ctl>/watched2 (wd 3: wd 2
 *     was added and removed) for IN_MODIFY;
 *   - SIGRTMIN+3 blocked with three instances queued (values 11, 22, 33, in
 *     that order: real-time signals queue, signal(7));
 *   - a POSIX timer (CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN, sigev_value a
 *     pointer, 100 ms period) whose handler counts expiries and checks
 *     si_value and si_timerid, and a one-shot CLOCK_REALTIME timer 1000 s
 *     ahead that signals the main thread (SIGEV_THREAD_ID, SIGRTMIN+1).
 *
 * verify checks all of it and leaves the state as it found it (counts written
 * back, the signal queued again).  Protocol: wl_common.h.
 *
 * With argv[2] "stale-epoll" the epoll also watches an eventfd whose fd was
 * then dup'ed and closed: its registration names an fd number that is not
 * open any more (cryo must refuse to dump that).
 */
#include "wl_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#define EFD_COUNT 7
#define SEM_COUNT 3
#define TICK_NS 100000000L
#define DATA_EFD 0x1111222233334444ULL
#define DATA_TFD 0xabcd0000feed0001ULL
#define SIGQ_VALUE 0x5150
#define FAR_S 1000

static const char *ctl;
static int efd, sem, tfd, oneshot, abstfd, sfd, ep, ino;
static int wd_file, wd_file2;
static timer_t ptimer, ptimer2;
static int marker; /* &marker is the POSIX timer's sigev_value */
static volatile sig_atomic_t rt_count, rt_bad, rt_bad_code, rt_far;
static char watched[WL_PATH_MAX], watched2[WL_PATH_MAX];

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (si->si_code == SI_TIMER && si->si_value.sival_ptr == &marker &&
        si->si_timerid == (int)(intptr_t)ptimer) {
        rt_count++;
    } else {
        rt_bad++;
        rt_bad_code = si->si_code;
    }
}

static void on_rt_far(int sig)
{
    (void)sig;
    rt_far++;
}

static void write_u64(int fd, uint64_t v, const char *what)
{
    if (write(fd, &v, 8) != 8)
        wl_die("write %s", what);
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        wl_die("open %s", path);
    if (wl_write_all(fd, "x", 1) < 0)
        wl_die("write %s", path);
    close(fd);
}

static void queue_sigusr2(void)
{
    union sigval v = { .sival_int = SIGQ_VALUE };
    if (sigqueue(wl_getpid(), SIGUSR2, v) != 0)
        wl_die("sigqueue SIGUSR2");
}

#define RT_QUEUED 3
static void queue_rt(void)
{
    for (int i = 1; i <= RT_QUEUED; i++) {
        union sigval v = { .sival_int = 11 * i };
        if (sigqueue(wl_getpid(), SIGRTMIN + 3, v) != 0)
            wl_die("sigqueue SIGRTMIN+3");
    }
}

/* Takes the queued real-time signals (checking order, values, siginfo) and
 * queues them again. */
static void check_rt(struct wl_checks *c)
{
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + 3);
    struct timespec zero = { 0, 0 };
    for (int i = 1; i <= RT_QUEUED; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int sig = sigtimedwait(&m, &si, &zero);
        wl_check(c, sig == SIGRTMIN + 3 && si.si_code == SI_QUEUE && si.si_value.sival_int == 11 * i &&
                        si.si_pid == wl_getpid() && si.si_uid == getuid(),
                 "queued SIGRTMIN+3 #%d: got signal %d code %d value %d pid %d, expected value %d from pid %d", i, sig,
                 si.si_code, si.si_value.sival_int, (int)si.si_pid, 11 * i, (int)wl_getpid());
    }
    siginfo_t extra;
    wl_check(c, sigtimedwait(&m, &extra, &zero) < 0, "more than %d SIGRTMIN+3 queued", RT_QUEUED);
    queue_rt();
}

static void setup(void)
{
    wl_path(watched, sizeof watched, ctl, "watched");
    wl_path(watched2, sizeof watched2, ctl, "watched2");
    char gap[WL_PATH_MAX];
    wl_path(gap, sizeof gap, ctl, "gap");
    touch(watched);
    touch(watched2);
    touch(gap);

    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sem = eventfd(SEM_COUNT, EFD_SEMAPHORE | EFD_NONBLOCK);
    if (efd < 0 || sem < 0)
        wl_die("eventfd");
    write_u64(efd, EFD_COUNT, "eventfd");

    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    oneshot = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
    abstfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    if (tfd < 0 || oneshot < 0 || abstfd < 0)
        wl_die("timerfd_create");
    struct itimerspec its = { { 0, TICK_NS }, { 0, TICK_NS } };
    if (timerfd_settime(tfd, 0, &its, NULL) != 0)
        wl_die("timerfd_settime periodic");
    struct itimerspec one = { { 0, 0 }, { 0, 20000000 } };
    if (timerfd_settime(oneshot, 0, &one, NULL) != 0)
        wl_die("timerfd_settime one-shot");
    struct itimerspec abs = { { 0, 0 }, { 0, 0 } };
    clock_gettime(CLOCK_REALTIME, &abs.it_value);
    abs.it_value.tv_sec += FAR_S;
    if (timerfd_settime(abstfd, TFD_TIMER_ABSTIME, &abs, NULL) != 0)
        wl_die("timerfd_settime absolute");

    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &m, NULL) != 0)
        wl_die("sigprocmask");
    sfd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        wl_die("signalfd");
    queue_sigusr2();
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN + 3);
    if (sigprocmask(SIG_BLOCK, &rt, NULL) != 0)
        wl_die("sigprocmask SIGRTMIN+3");
    queue_rt();

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        wl_die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = DATA_EFD };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0)
        wl_die("epoll_ctl eventfd");
    ev.data.u64 = DATA_TFD;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0)
        wl_die("epoll_ctl timerfd");

    ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0)
        wl_die("inotify_init1");
    wd_file = inotify_add_watch(ino, watched, IN_MODIFY);
    int wd_gap = inotify_add_watch(ino, gap, IN_MODIFY);
    if (wd_file < 0 || wd_gap < 0 || inotify_rm_watch(ino, wd_gap) != 0)
        wl_die("inotify_add_watch");
    wd_file2 = inotify_add_watch(ino, watched2, IN_MODIFY | IN_ATTRIB);
    if (wd_file2 < 0)
        wl_die("inotify_add_watch 2");
    char buf[4096];
    while (read(ino, buf, sizeof buf) > 0) { /* drop IN_IGNORED of the gap */
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    if (sigaction(SIGRTMIN, &sa, NULL) != 0)
        wl_die("sigaction SIGRTMIN");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_rt_far;
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGRTMIN + 1, &sa, NULL) != 0)
        wl_die("sigaction SIGRTMIN+1");
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_ptr = &marker;
    if (timer_create(CLOCK_MONOTONIC, &sev, &ptimer) != 0)
        wl_die("timer_create");
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGRTMIN + 1;
    sev._sigev_un._tid = wl_getpid();
    if (timer_create(CLOCK_REALTIME, &sev, &ptimer2) != 0)
        wl_die("timer_create thread");
    if (timer_settime(ptimer, 0, &its, NULL) != 0)
        wl_die("timer_settime");
    struct itimerspec far = { { 0, 0 }, { FAR_S, 0 } };
    if (timer_settime(ptimer2, 0, &far, NULL) != 0)
        wl_die("timer_settime far");

    wl_sleep_ms(100); /* the one-shot timerfd has expired: 1 tick pending */
}

/* Value of "key:" in /proc/self/fdinfo/FD (first match), or "" */
static void fdinfo_field(int fd, const char *key, char *out, size_t outsz)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    out[0] = '\0';
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return;
    ssize_t n = wl_pread_full(f, buf, sizeof buf - 1, 0);
    close(f);
    if (n < 0)
        return;
    buf[n] = '\0';
    size_t klen = strlen(key);
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, outsz, "%s", v);
            return;
        }
        line = nl ? nl + 1 : NULL;
    }
}

/* Whole /proc/self/fdinfo/FD. */
static void fdinfo_all(int fd, char *buf, size_t bufsz)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    buf[0] = '\0';
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return;
    ssize_t n = wl_pread_full(f, buf, bufsz - 1, 0);
    close(f);
    buf[n < 0 ? 0 : n] = '\0';
}

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int wait_readable(int fd, int timeout_ms)
{
    uint64_t deadline = wl_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        uint64_t now = wl_now_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ULL);
        int r = poll(&p, 1, left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* epoll_wait until an event with `data` is seen, up to timeout_ms. */
static int epoll_sees(uint64_t data, int timeout_ms, uint32_t *events)
{
    uint64_t deadline = wl_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    for (;;) {
        struct epoll_event evs[8];
        uint64_t now = wl_now_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ULL);
        int n = epoll_wait(ep, evs, 8, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++)
            if (evs[i].data.u64 == data) {
                *events = evs[i].events;
                return 1;
            }
        if (n == 0 || wl_now_ns() >= deadline)
            return 0;
        wl_sleep_ms(5);
    }
}

/* Next inotify event, waiting up to 1 s. */
static int next_inotify(struct inotify_event *out)
{
    static char buf[4096] __attribute__((aligned(8)));
    if (wait_readable(ino, 1000) <= 0)
        return 0;
    ssize_t n = read(ino, buf, sizeof buf);
    if (n < (ssize_t)sizeof(struct inotify_event))
        return 0;
    memcpy(out, buf, sizeof *out);
    return 1;
}

static int verify(char *summary, size_t sumsz)
{
    struct wl_checks c;
    wl_checks_init(&c);
    char v[256];
    uint64_t x = 0;

    /* eventfd: count 7, non-blocking, not semaphore */
    wl_check(&c, (fcntl(efd, F_GETFL) & O_NONBLOCK) != 0, "eventfd: O_NONBLOCK lost");
    fdinfo_field(efd, "eventfd-count", v, sizeof v);
    wl_check(&c, strtoull(v, NULL, 16) == EFD_COUNT, "eventfd: fdinfo count expected %d actual '%s'", EFD_COUNT, v);
    fdinfo_field(efd, "eventfd-semaphore", v, sizeof v);
    wl_check(&c, v[0] == '\0' || strcmp(v, "0") == 0, "eventfd: semaphore expected 0 actual '%s'", v);
    uint32_t events = 0;
    int seen = epoll_sees(DATA_EFD, 0, &events);
    wl_check(&c, seen == 1 && (events & EPOLLIN), "epoll: eventfd event with data %#llx expected, got %d (events %#x)",
             (unsigned long long)DATA_EFD, seen, events);
    ssize_t r = read(efd, &x, 8);
    wl_check(&c, r == 8 && x == EFD_COUNT, "eventfd: read expected %d actual %llu (r %zd)", EFD_COUNT,
             (unsigned long long)x, r);
    r = read(efd, &x, 8);
    wl_check(&c, r < 0 && errno == EAGAIN, "eventfd: second read expected EAGAIN, got %zd", r);
    write_u64(efd, EFD_COUNT, "eventfd");

    /* semaphore eventfd: 3 reads of 1, then EAGAIN */
    /* (fdinfo has the line from Linux 6.6 on; the reads below tell the mode anyway) */
    fdinfo_field(sem, "eventfd-semaphore", v, sizeof v);
    wl_check(&c, strcmp(v, "1") == 0 || v[0] == '\0',
             "semaphore eventfd: fdinfo semaphore expected 1 actual '%s'", v);
    int got = 0;
    for (int i = 0; i < SEM_COUNT + 1; i++) {
        x = 0;
        if (read(sem, &x, 8) == 8 && x == 1)
            got++;
    }
    wl_check(&c, got == SEM_COUNT, "semaphore eventfd: expected %d reads of 1, actual %d", SEM_COUNT, got);
    if (got > 0)
        write_u64(sem, (uint64_t)got, "semaphore eventfd");

    /* periodic timerfd */
    struct itimerspec its;
    wl_check(&c, timerfd_gettime(tfd, &its) == 0, "timerfd_gettime: %s", strerror(errno));
    wl_check(&c, ts_ns(its.it_interval) == TICK_NS, "timerfd: interval expected %ld ns actual %lld", TICK_NS,
             (long long)ts_ns(its.it_interval));
    /* 0 is an armed timer too: an expiry just past whose hrtimer callback has
     * not run yet reads as 0 left (timerfd_get_remaining() clamps at 0; seen
     * under emulation), where a POSIX timer would say 1 ns. The interval
     * above tells armed from disarmed. */
    wl_check(&c, ts_ns(its.it_value) >= 0 && ts_ns(its.it_value) <= TICK_NS,
             "timerfd: time left expected in [0, 100 ms] actual %lld ns", (long long)ts_ns(its.it_value));
    fdinfo_field(tfd, "clockid", v, sizeof v);
    wl_check(&c, atoi(v) == CLOCK_MONOTONIC, "timerfd: clockid expected %d actual '%s'", CLOCK_MONOTONIC, v);
    uint64_t ticks = 0;
    int tick_events = 0;
    for (int round = 0; round < 2; round++) {
        events = 0;
        seen = epoll_sees(DATA_TFD, 1000, &events);
        if (seen == 1)
            tick_events++;
        x = 0;
        if (read(tfd, &x, 8) == 8)
            ticks += x;
    }
    wl_check(&c, tick_events == 2, "epoll: expected 2 timerfd events with data %#llx within 1 s each, got %d",
             (unsigned long long)DATA_TFD, tick_events);
    wl_check(&c, ticks >= 2, "timerfd: expected ticks to keep coming, read %llu", (unsigned long long)ticks);

    /* one-shot timerfd: expired, 1 tick never read */
    fdinfo_field(oneshot, "ticks", v, sizeof v);
    wl_check(&c, strcmp(v, "1") == 0, "one-shot timerfd: pending ticks expected 1 actual '%s'", v);
    wl_check(&c, wait_readable(oneshot, 0) == 1, "one-shot timerfd: not readable");
    fdinfo_field(oneshot, "clockid", v, sizeof v);
    wl_check(&c, atoi(v) == CLOCK_BOOTTIME, "one-shot timerfd: clockid expected %d actual '%s'", CLOCK_BOOTTIME, v);

    /* absolute timerfd */
    wl_check(&c, timerfd_gettime(abstfd, &its) == 0, "timerfd_gettime abs: %s", strerror(errno));
    wl_check(&c, ts_ns(its.it_value) > (int64_t)(FAR_S - 120) * 1000000000LL &&
                     ts_ns(its.it_value) <= (int64_t)FAR_S * 1000000000LL,
             "absolute timerfd: time left expected about %d s, actual %lld ns", FAR_S, (long long)ts_ns(its.it_value));
    fdinfo_field(abstfd, "settime flags", v, sizeof v);
    wl_check(&c, strtol(v, NULL, 8) == TFD_TIMER_ABSTIME, "absolute timerfd: settime flags expected 01 actual '%s'", v);

    /* signalfd + the pending SIGUSR2 */
    fdinfo_field(sfd, "sigmask", v, sizeof v);
    wl_check(&c, strtoull(v, NULL, 16) == (1ULL << (SIGUSR2 - 1)), "signalfd: sigmask expected %llx actual '%s'",
             1ULL << (SIGUSR2 - 1), v);
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    wl_check(&c, sigismember(&cur, SIGUSR2), "SIGUSR2 not blocked any more");
    sigset_t pend;
    sigpending(&pend);
    wl_check(&c, sigismember(&pend, SIGUSR2), "SIGUSR2 not pending");
    struct signalfd_siginfo ssi;
    memset(&ssi, 0, sizeof ssi);
    r = read(sfd, &ssi, sizeof ssi);
    wl_check(&c, r == sizeof ssi && ssi.ssi_signo == SIGUSR2 && ssi.ssi_code == SI_QUEUE && ssi.ssi_int == SIGQ_VALUE,
             "signalfd: expected SIGUSR2 SI_QUEUE value %#x, read %zd signo %u code %d value %#x", SIGQ_VALUE, r,
             ssi.ssi_signo, ssi.ssi_code, ssi.ssi_int);
    queue_sigusr2();
    check_rt(&c);

    /* epoll fdinfo */
    char all[8192];
    fdinfo_all(ep, all, sizeof all);
    snprintf(v, sizeof v, "data: %16llx", (unsigned long long)DATA_EFD);
    wl_check(&c, strstr(all, v) != NULL, "epoll fdinfo lacks '%s'", v);
    snprintf(v, sizeof v, "data: %16llx", (unsigned long long)DATA_TFD);
    wl_check(&c, strstr(all, v) != NULL, "epoll fdinfo lacks '%s'", v);

    /* inotify: wds 1 and 3, events for modifications after restore */
    wl_check(&c, wd_file == 1 && wd_file2 == 3, "inotify: wds expected 1, 3 actual %d, %d", wd_file, wd_file2);
    fdinfo_all(ino, all, sizeof all);
    wl_check(&c, strstr(all, "inotify wd:1 ") && strstr(all, "inotify wd:3 ") && !strstr(all, "inotify wd:2 "),
             "inotify fdinfo: expected wd 1 and 3: %s", all);
    char buf[4096];
    while (read(ino, buf, sizeof buf) > 0) {
    }
    touch(watched);
    struct inotify_event ie;
    memset(&ie, 0, sizeof ie);
    int ok = next_inotify(&ie);
    wl_check(&c, ok && ie.wd == wd_file && (ie.mask & IN_MODIFY), "inotify: expected IN_MODIFY on wd %d, got %s wd %d mask %#x",
             wd_file, ok ? "event" : "nothing", ie.wd, ie.mask);
    while (read(ino, buf, sizeof buf) > 0) {
    }
    touch(watched2);
    memset(&ie, 0, sizeof ie);
    ok = next_inotify(&ie);
    wl_check(&c, ok && ie.wd == wd_file2 && (ie.mask & IN_MODIFY), "inotify: expected IN_MODIFY on wd %d, got %s wd %d mask %#x",
             wd_file2, ok ? "event" : "nothing", ie.wd, ie.mask);
    while (read(ino, buf, sizeof buf) > 0) {
    }

    /* POSIX timers */
    wl_check(&c, timer_gettime(ptimer, &its) == 0, "timer_gettime: %s", strerror(errno));
    wl_check(&c, ts_ns(its.it_interval) == TICK_NS, "POSIX timer: interval expected %ld ns actual %lld", TICK_NS,
             (long long)ts_ns(its.it_interval));
    wl_check(&c, ts_ns(its.it_value) > 0 && ts_ns(its.it_value) <= TICK_NS,
             "POSIX timer: time left expected in (0, 100 ms] actual %lld ns", (long long)ts_ns(its.it_value));
    int c0 = rt_count;
    for (int i = 0; i < 100 && rt_count < c0 + 2; i++)
        wl_sleep_ms(10);
    wl_check(&c, rt_count >= c0 + 2, "POSIX timer: expected 2 more expiries within 1 s, got %d", rt_count - c0);
    wl_check(&c, rt_bad == 0, "POSIX timer: %d SIGRTMIN with the wrong si_code/si_value/si_timerid (last code %d)",
             (int)rt_bad, (int)rt_bad_code);
    wl_check(&c, timer_gettime(ptimer2, &its) == 0, "timer_gettime 2: %s", strerror(errno));
    wl_check(&c, ts_ns(its.it_interval) == 0 && ts_ns(its.it_value) > (int64_t)(FAR_S - 120) * 1000000000LL &&
                     ts_ns(its.it_value) <= (int64_t)FAR_S * 1000000000LL,
             "POSIX timer 2: expected one-shot about %d s ahead, interval %lld value %lld", FAR_S,
             (long long)ts_ns(its.it_interval), (long long)ts_ns(its.it_value));
    wl_check(&c, rt_far == 0, "POSIX timer 2 fired %d times", (int)rt_far);
    char timers[4096];
    int tf = open("/proc/self/timers", O_RDONLY | O_CLOEXEC);
    ssize_t tn = tf < 0 ? -1 : wl_pread_full(tf, timers, sizeof timers - 1, 0);
    if (tf >= 0)
        close(tf);
    timers[tn < 0 ? 0 : tn] = '\0';
    snprintf(v, sizeof v, "ID: %d\nsignal: %d/%016llx\nnotify: signal/pid.%d\nClockID: %d", (int)(intptr_t)ptimer,
             SIGRTMIN, (unsigned long long)(uintptr_t)&marker, (int)wl_getpid(), CLOCK_MONOTONIC);
    wl_check(&c, strstr(timers, v) != NULL, "/proc/self/timers lacks '%s': %s", v, timers);
    snprintf(v, sizeof v, "ID: %d\nsignal: %d/", (int)(intptr_t)ptimer2, SIGRTMIN + 1);
    char v2[64];
    snprintf(v2, sizeof v2, "notify: signal/tid.%d", (int)wl_getpid());
    wl_check(&c, strstr(timers, v) != NULL && strstr(timers, v2) != NULL, "/proc/self/timers lacks timer 2: %s", timers);

    snprintf(summary, sumsz, "eventfds: %d checks, %llu ticks, %d POSIX timer expiries", c.total,
             (unsigned long long)ticks, (int)rt_count);
    return wl_report(ctl, &c, summary);
}

static void make_stale_epoll_entry(void)
{
    int x = eventfd(0, EFD_CLOEXEC);
    if (x < 0)
        wl_die("eventfd (stale)");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x57a1e };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, x, &ev) != 0)
        wl_die("epoll_ctl (stale)");
    /* the file stays open (and registered) under another number */
    if (fcntl(x, F_DUPFD_CLOEXEC, 100) < 0)
        wl_die("dup (stale)");
    close(x);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: eventfds CTL_DIR [stale-epoll]\n");
        return 2;
    }
    ctl = argv[1];
    setup();
    if (argc > 2 && strcmp(argv[2], "stale-epoll") == 0)
        make_stale_epoll_entry();
    wl_ready(ctl);
    for (;;) {
        int req = wl_poll_verify(ctl);
        if (req != WL_VERIFY_NONE) {
            char summary[256];
            int ok = verify(summary, sizeof summary);
            if (req == WL_VERIFY_EXIT)
                return ok ? 0 : 1;
        }
        wl_sleep_ms(10);
    }
}
