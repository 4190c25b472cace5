/* userns: a process in a user namespace of its own, run under
 *   unshare --user --map-root-user [--pid --mount-proc --net --ipc --uts ...] --fork ... userns CTL
 * (tests/e2e/test_userns.py). Writes its pid to <ctl>/ready. At start it
 * records what it sees of its credentials and namespaces; every verify checks
 * that they read the same:
 *  - getresuid/getresgid and its supplementary groups (ids inside the namespace);
 *  - CapInh/CapPrm/CapEff/CapBnd/CapAmb of /proc/self/status (capabilities
 *    relative to its user namespace);
 *  - /proc/self/uid_map, gid_map, setgroups and /proc/self/cgroup;
 *  - for each of its namespaces (uts, ipc, net, mnt, pid, cgroup), whether
 *    its user namespace owns it (ioctl NS_GET_USERNS), and, where it does
 *    for the UTS namespace, that sethostname(2) with its own name succeeds
 *    (CAP_SYS_ADMIN over it);
 *  - a child forked now has the same uid and capabilities;
 *  - getpid() and getppid() (in a PID namespace of its own: its pid there,
 *    and 1, the namespace's init), and the last pid of the NSpid line of
 *    /proc/self/status, getpid().
 *
 * Usage: userns CTL_DIR
 */
#include "wl_common.h"

#include <grp.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#define NKINDS 6
static const char *const kinds[NKINDS] = {"uts", "ipc", "net", "mnt", "pid", "cgroup"};

struct state {
    char ids[256];
    char caps[512];
    char uid_map[512], gid_map[512], setgroups[32], cgroup[2048];
    char owned[64];  /* one 'y'/'n' per kind */
    char child[600]; /* a child's ids and capabilities */
    char pids[128];  /* getpid, getppid, the last pid of NSpid */
    int verifies;
};

static void read_file(const char *path, char *out, size_t n)
{
    int fd = open(path, O_RDONLY);
    ssize_t r = fd >= 0 ? read(fd, out, n - 1) : -1;
    if (fd >= 0)
        close(fd);
    out[r < 0 ? 0 : r] = 0;
}

static void get_ids(char *out, size_t n)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    gid_t groups[64];
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    int ng = getgroups(64, groups);
    int at = snprintf(out, n, "uid %u %u %u gid %u %u %u groups", r, e, s, gr, ge, gs);
    for (int i = 0; i < ng && at > 0 && (size_t)at < n; i++)
        at += snprintf(out + at, n - (size_t)at, " %u", groups[i]);
}

static void get_caps(char *out, size_t n)
{
    char status[4096];
    read_file("/proc/self/status", status, sizeof status);
    out[0] = 0;
    size_t at = 0;
    for (char *line = strtok(status, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "Cap", 3) == 0 && at + strlen(line) + 2 < n)
            at += (size_t)snprintf(out + at, n - at, "%s ", line);
}

static ino_t ino_of_fd(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static void get_owned(char *out)
{
    char path[64];
    int user = open("/proc/self/ns/user", O_RDONLY);
    const ino_t mine = ino_of_fd(user);
    close(user);
    for (int i = 0; i < NKINDS; i++) {
        snprintf(path, sizeof path, "/proc/self/ns/%s", kinds[i]);
        int fd = open(path, O_RDONLY);
        int owner = fd >= 0 ? ioctl(fd, NS_GET_USERNS) : -1;
        /* EPERM: owned by an ancestor of our user namespace */
        out[i] = owner >= 0 && ino_of_fd(owner) == mine ? 'y' : 'n';
        if (owner >= 0)
            close(owner);
        if (fd >= 0)
            close(fd);
    }
    out[NKINDS] = 0;
}

static void child_view(char *out, size_t n)
{
    int p[2];
    out[0] = 0;
    if (pipe(p) != 0)
        return;
    pid_t c = fork();
    if (c == 0) {
        char buf[600], ids[256], caps[512];
        get_ids(ids, sizeof ids);
        get_caps(caps, sizeof caps);
        int len = snprintf(buf, sizeof buf, "%s | %s", ids, caps);
        _exit(wl_write_all(p[1], buf, (size_t)len) == 0 ? 0 : 1);
    }
    close(p[1]);
    ssize_t r = c > 0 ? read(p[0], out, n - 1) : -1;
    out[r < 0 ? 0 : r] = 0;
    close(p[0]);
    if (c > 0)
        waitpid(c, NULL, 0);
}

static void get_pids(char *out, size_t n)
{
    char status[4096];
    read_file("/proc/self/status", status, sizeof status);
    int levels = 0;
    long last = -1;
    char *at = strstr(status, "\nNSpid:");
    if (at) {
        char *end = strchr(at + 1, '\n');
        if (end)
            *end = 0;
        for (char *w = strtok(at + 7, " \t"); w; w = strtok(NULL, " \t")) {
            levels++;
            last = strtol(w, NULL, 10);
        }
    }
    /* The levels are not compared: a restore with --pidns new of a tree
     * that shared cryo's PID namespace nests it one level deeper. */
    snprintf(out, n, "pid %d ppid %d NSpid last %ld%s", (int)getpid(), (int)getppid(), last,
             levels > 0 && last == (long)getpid() ? "" : " (not getpid)");
}

static void snapshot(struct state *s)
{
    get_pids(s->pids, sizeof s->pids);
    get_ids(s->ids, sizeof s->ids);
    get_caps(s->caps, sizeof s->caps);
    read_file("/proc/self/uid_map", s->uid_map, sizeof s->uid_map);
    read_file("/proc/self/gid_map", s->gid_map, sizeof s->gid_map);
    read_file("/proc/self/setgroups", s->setgroups, sizeof s->setgroups);
    read_file("/proc/self/cgroup", s->cgroup, sizeof s->cgroup);
    get_owned(s->owned);
    child_view(s->child, sizeof s->child);
}

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    struct state *st = arg;
    static struct state now;
    snapshot(&now);
    wl_check(c, strcmp(st->ids, now.ids) == 0, "ids: expected \"%s\", actual \"%s\"", st->ids, now.ids);
    wl_check(c, strcmp(st->caps, now.caps) == 0, "capabilities: expected \"%s\", actual \"%s\"", st->caps, now.caps);
    wl_check(c, strcmp(st->uid_map, now.uid_map) == 0, "uid_map: expected \"%s\", actual \"%s\"", st->uid_map,
             now.uid_map);
    wl_check(c, strcmp(st->gid_map, now.gid_map) == 0, "gid_map: expected \"%s\", actual \"%s\"", st->gid_map,
             now.gid_map);
    wl_check(c, strcmp(st->setgroups, now.setgroups) == 0, "setgroups: expected \"%s\", actual \"%s\"",
             st->setgroups, now.setgroups);
    wl_check(c, strcmp(st->cgroup, now.cgroup) == 0, "/proc/self/cgroup: expected \"%s\", actual \"%s\"", st->cgroup,
             now.cgroup);
    wl_check(c, strcmp(st->owned, now.owned) == 0,
             "namespaces (uts ipc net mnt pid cgroup) owned by its user namespace: expected %s, actual %s", st->owned,
             now.owned);
    wl_check(c, strcmp(st->child, now.child) == 0, "a child's view: expected \"%s\", actual \"%s\"", st->child,
             now.child);
    wl_check(c, strcmp(st->pids, now.pids) == 0, "pids: expected \"%s\", actual \"%s\"", st->pids, now.pids);
    if (st->owned[0] == 'y') {
        struct utsname u;
        int ok = uname(&u) == 0 && sethostname(u.nodename, strlen(u.nodename)) == 0;
        wl_check(c, ok, "sethostname in its own UTS namespace: %s", strerror(errno));
    }
    st->verifies++;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CTL_DIR\n", argv[0]);
        return 2;
    }
    static struct state st;
    snapshot(&st);
    wl_ready(argv[1]);
    wl_serve(argv[1], check, &st, "userns");
}
