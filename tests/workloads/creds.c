/* A process that is not root, with settings the kernel resets on a
 * credential change (tests/e2e/test_taskstate.py):
 *   uid/gid 65534 (nobody/nogroup), supplementary groups 65534 and 100;
 *   capabilities kept across the uid switch (SECBIT_KEEP_CAPS, locked):
 *   permitted KILL + NET_BIND_SERVICE, effective KILL, inheritable and
 *   ambient NET_BIND_SERVICE; CAP_SYS_ADMIN dropped from the bounding set;
 *   securebits NOROOT (locked) and KEEP_CAPS (locked);
 *   then, as nobody: parent-death signal SIGUSR1 (ignored), dumpable 1 (the
 *   uid switch made it fs.suid_dumpable, 0), no_new_privs; and a second
 *   thread with the same credentials.
 * verify: every one of these, in both threads.
 *
 * Usage: creds CTL (CTL must be writable by uid 65534)
 */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>

#include "wl_common.h"

#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#define SECBIT_KEEP_CAPS (1 << 4)
#define SECBIT_KEEP_CAPS_LOCKED (1 << 5)
#define WANT_SECUREBITS (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS | SECBIT_KEEP_CAPS_LOCKED)
#define CAPBIT(c) (1ULL << (c))
#define WANT_PRM (CAPBIT(CAP_KILL) | CAPBIT(CAP_NET_BIND_SERVICE))
#define WANT_EFF CAPBIT(CAP_KILL)
#define WANT_INH CAPBIT(CAP_NET_BIND_SERVICE)
#define WANT_AMB CAPBIT(CAP_NET_BIND_SERVICE)
#define NOBODY 65534

static uint64_t status_hex(const char *key)
{
    char buf[4096];
    int fd = open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : wl_pread_full(fd, buf, sizeof buf - 1, 0);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return ~0ULL;
    buf[n] = '\0';
    char *p = strstr(buf, key);
    return p ? strtoull(p + strlen(key), NULL, 16) : ~0ULL;
}

static void set_caps(uint64_t eff, uint64_t prm, uint64_t inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)}};
    if (syscall(SYS_capset, &h, d) != 0)
        wl_die("capset");
}

/* The per-thread part of the checks (credentials are per thread). */
static void check_thread(struct wl_checks *c, const char *who)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    wl_check(c, r == NOBODY && e == NOBODY && s == NOBODY, "%s uids %u %u %u", who, r, e, s);
    wl_check(c, gr == NOBODY && ge == NOBODY && gs == NOBODY, "%s gids %u %u %u", who, gr, ge, gs);
    wl_check(c, setfsuid(-1) == NOBODY && setfsgid(-1) == NOBODY, "%s fs ids", who);
    gid_t groups[8];
    int n = getgroups(8, groups);
    wl_check(c, n == 2 && groups[0] == 100 && groups[1] == NOBODY, "%s supplementary groups (%d)", who, n);
    wl_check(c, status_hex("CapPrm:") == WANT_PRM, "%s CapPrm %#llx", who, (unsigned long long)status_hex("CapPrm:"));
    wl_check(c, status_hex("CapEff:") == WANT_EFF, "%s CapEff %#llx", who, (unsigned long long)status_hex("CapEff:"));
    wl_check(c, status_hex("CapInh:") == WANT_INH, "%s CapInh %#llx", who, (unsigned long long)status_hex("CapInh:"));
    wl_check(c, status_hex("CapAmb:") == WANT_AMB, "%s CapAmb %#llx", who, (unsigned long long)status_hex("CapAmb:"));
    wl_check(c, !(status_hex("CapBnd:") & CAPBIT(CAP_SYS_ADMIN)), "%s CAP_SYS_ADMIN still in the bounding set", who);
    int sb = prctl(PR_GET_SECUREBITS);
    wl_check(c, sb == WANT_SECUREBITS, "%s securebits %#x, expected %#x", who, sb, WANT_SECUREBITS);
    wl_check(c, prctl(PR_GET_KEEPCAPS) == 1, "%s keep-caps %d", who, prctl(PR_GET_KEEPCAPS));
    wl_check(c, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "%s no_new_privs", who);
}

static struct wl_checks thread_checks;
static volatile int thread_go, thread_done;

static void *thread_main(void *arg)
{
    (void)arg;
    for (;;) {
        if (thread_go) {
            wl_checks_init(&thread_checks);
            check_thread(&thread_checks, "thread 2:");
            thread_go = 0;
            thread_done = 1;
        }
        wl_sleep_ms(2);
    }
    return NULL;
}

static void verify(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    check_thread(c, "main:");
    int sig = 0;
    prctl(PR_GET_PDEATHSIG, &sig);
    wl_check(c, sig == SIGUSR1, "parent-death signal %d, expected SIGUSR1", sig);
    wl_check(c, prctl(PR_GET_DUMPABLE) == 1, "dumpable %d, expected 1", prctl(PR_GET_DUMPABLE));
    thread_done = 0;
    thread_go = 1;
    for (int i = 0; i < 5000 && !thread_done; i++)
        wl_sleep_ms(1);
    wl_check(c, thread_done, "thread 2 did not answer");
    if (thread_done && thread_checks.failed)
        wl_check(c, 0, "%s", thread_checks.msg);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        wl_die("usage: creds CTL");
    const char *ctl = argv[1];
    /* As root: the bounding set and securebits, then the switch. */
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN) != 0)
        wl_die("PR_CAPBSET_DROP");
    if (prctl(PR_SET_SECUREBITS, WANT_SECUREBITS) != 0)
        wl_die("PR_SET_SECUREBITS");
    gid_t groups[2] = {NOBODY, 100};
    if (setgroups(2, groups) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        wl_die("switching to nobody");
    set_caps(WANT_EFF, WANT_PRM, WANT_INH);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0)
        wl_die("PR_CAP_AMBIENT_RAISE");
    /* As nobody: what a uid change resets. */
    signal(SIGUSR1, SIG_IGN);
    if (prctl(PR_GET_DUMPABLE) != 0)
        wl_die("expected dumpable 0 after the uid switch (fs.suid_dumpable 0), got %d", prctl(PR_GET_DUMPABLE));
    if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        wl_die("prctl");
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0)
        wl_die("pthread_create");
    wl_ready(ctl);
    wl_serve(ctl, verify, NULL, "nobody with capabilities, securebits, pdeath signal and dumpable");
}
