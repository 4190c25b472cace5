/* iouring: holds an fd of a kind cryo refuses to dump, and waits.  By default
 * an io_uring instance (io_uring_setup(2) through syscall(2)); argv[2] may
 * name another kind: fanotify, userfaultfd, pidfd, perf_event, bpf-map;
 * io_uring-mapped and perf_event-mapped map the ring of the kind (its
 * memory, shown as anon_inode:[KIND] in /proc/self/maps) and close the fd:
 * the mapping alone holds the object.
 * cryo must refuse to dump it, naming the kind, and leave it running.  verify
 * checks the fd is still there and of that kind.  If the kernel does not let
 * it create the fd, it prints "unavailable: ..." and exits 3.
 * Protocol: wl_common.h.
 */
#include "wl_common.h"

#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sys/fanotify.h>
#include <sys/mman.h>

static int fd = -1;
static char want[64];
static int mapped; /* the fd was closed, its ring stays mapped */

/* The ring of an io_uring or perf_event fd, mapped shared; the fd closed. */
static int map_ring(const char *kind)
{
    size_t len = 2 * 4096;
    off_t off = 0;
    if (strcmp(kind, "io_uring") == 0) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        fd = (int)syscall(SYS_io_uring_setup, 4, &p);
        len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
        off = IORING_OFF_SQ_RING;
    } else {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.type = PERF_TYPE_SOFTWARE;
        a.size = sizeof a;
        a.config = PERF_COUNT_SW_CPU_CLOCK;
        a.disabled = 1;
        fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    }
    if (fd < 0)
        return -1;
    if (mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off) == MAP_FAILED)
        return -1;
    close(fd);
    mapped = 1;
    snprintf(want, sizeof want, "anon_inode:[%s]", kind);
    return 0;
}

static int create(const char *kind)
{
    if (strcmp(kind, "io_uring") == 0) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        snprintf(want, sizeof want, "anon_inode:[io_uring]");
        return (int)syscall(SYS_io_uring_setup, 4, &p);
    }
    if (strcmp(kind, "fanotify") == 0) {
        snprintf(want, sizeof want, "anon_inode:[fanotify]");
        return fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
    }
    if (strcmp(kind, "userfaultfd") == 0) {
        snprintf(want, sizeof want, "anon_inode:[userfaultfd]");
        return (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    }
    if (strcmp(kind, "pidfd") == 0) {
        snprintf(want, sizeof want, "anon_inode:[pidfd]");
        return (int)syscall(SYS_pidfd_open, wl_getpid(), 0);
    }
    if (strcmp(kind, "perf_event") == 0) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.type = PERF_TYPE_SOFTWARE;
        a.size = sizeof a;
        a.config = PERF_COUNT_SW_CPU_CLOCK;
        a.disabled = 1;
        snprintf(want, sizeof want, "anon_inode:[perf_event]");
        return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    }
    if (strcmp(kind, "bpf-map") == 0) {
        union bpf_attr b;
        memset(&b, 0, sizeof b);
        b.map_type = BPF_MAP_TYPE_ARRAY;
        b.key_size = 4;
        b.value_size = 4;
        b.max_entries = 1;
        snprintf(want, sizeof want, "anon_inode:bpf-map");
        return (int)syscall(SYS_bpf, BPF_MAP_CREATE, &b, sizeof b);
    }
    fprintf(stderr, "unknown kind %s\n", kind);
    exit(2);
}

static int verify(const char *ctl)
{
    struct wl_checks c;
    wl_checks_init(&c);
    if (mapped) {
        FILE *f = fopen("/proc/self/maps", "r");
        char line[512];
        int found = 0;
        while (f && fgets(line, sizeof line, f))
            found |= strstr(line, want) != NULL;
        if (f)
            fclose(f);
        wl_check(&c, found, "no mapping of %s", want);
        return wl_report(ctl, &c, want);
    }
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = '\0';
    wl_check(&c, strcmp(link, want) == 0, "fd %d expected %s actual '%s'", fd, want, link);
    char summary[400];
    snprintf(summary, sizeof summary, "iouring: fd %d is %s", fd, link);
    return wl_report(ctl, &c, summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: iouring CTL_DIR [io_uring|fanotify|userfaultfd|pidfd|perf_event|bpf-map|io_uring-mapped|perf_event-mapped]\n");
        return 2;
    }
    const char *kind = argc > 2 ? argv[2] : "io_uring";
    if (strcmp(kind, "io_uring-mapped") == 0 || strcmp(kind, "perf_event-mapped") == 0) {
        char base[32];
        snprintf(base, sizeof base, "%.*s", (int)(strchr(kind, '-') - kind), kind);
        if (map_ring(base) != 0) {
            fprintf(stderr, "unavailable: cannot map a %s ring: %s\n", base, strerror(errno));
            return 3;
        }
    } else {
        fd = create(kind);
    }
    if (fd < 0) {
        fprintf(stderr, "unavailable: cannot create a %s fd: %s\n", kind, strerror(errno));
        return 3;
    }
    wl_ready(argv[1]);
    for (;;) {
        int req = wl_poll_verify(argv[1]);
        if (req != WL_VERIFY_NONE) {
            int ok = verify(argv[1]);
            if (req == WL_VERIFY_EXIT)
                return ok ? 0 : 1;
        }
        wl_sleep_ms(10);
    }
}
