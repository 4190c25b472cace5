/* manyconns: many established loopback TCP connections, both ends in this
 * process, each with bytes queued both ways (tests/e2e/test_sockscale.py).
 *
 * Raises its own soft RLIMIT_NOFILE to what N connections need (2 fds
 * each) and opens them to its own listener (closed once all are made). On
 * each connection the client end sends 64 bytes of pattern 2i and the server
 * end 64 bytes of pattern 2i+1, which nobody reads before the first verify:
 * every socket has a receive queue at the dump. The fds stay at the numbers
 * recorded here; every socket has SO_RCVTIMEO of 5 s (a lost byte is a
 * failed check, not a hang).
 *
 * Verify: the first time (per memory image) reads and checks the queued
 * patterns on every connection; every time, one 8-byte round of the verify's
 * number each way on every connection, checked; and the soft RLIMIT_NOFILE
 * is the one set here.
 *
 * Usage: manyconns CTL_DIR N
 */
#include "wl_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define QUEUED 64

struct conns {
    long n;
    int *cli, *srv;
    int consumed;  /* the queued patterns were read (this memory image) */
    uint64_t round;
    rlim_t soft;
};

static int recv_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = recv(fd, (char *)buf + got, len - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -2 : -1;
        got += (size_t)r;
    }
    return 0;
}

static void check_conns(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    struct conns *k = arg;
    struct rlimit rl = {0, 0};
    wl_check(c, getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == k->soft,
             "RLIMIT_NOFILE soft: expected %llu actual %llu", (unsigned long long)k->soft,
             (unsigned long long)rl.rlim_cur);
    int bad = 0;
    k->round++;
    for (long i = 0; i < k->n && bad < 8; i++) {
        char buf[QUEUED];
        if (!k->consumed) {
            int rc = recv_exact(k->srv[i], buf, QUEUED);
            if (!wl_check(c, rc == 0, "conn %ld (fds %d/%d): client's queued bytes: %s", i, k->cli[i], k->srv[i],
                          rc == -2 ? "end of stream" : strerror(errno)) ||
                !wl_check_pattern(c, "client's queued bytes", buf, QUEUED, 2 * (uint64_t)i)) {
                bad++;
                continue;
            }
            rc = recv_exact(k->cli[i], buf, QUEUED);
            if (!wl_check(c, rc == 0, "conn %ld (fds %d/%d): server's queued bytes: %s", i, k->cli[i], k->srv[i],
                          rc == -2 ? "end of stream" : strerror(errno)) ||
                !wl_check_pattern(c, "server's queued bytes", buf, QUEUED, 2 * (uint64_t)i + 1)) {
                bad++;
                continue;
            }
        }
        uint64_t v = k->round * 1000003u + (uint64_t)i, got = 0;
        int ok = send(k->cli[i], &v, sizeof v, MSG_NOSIGNAL) == (ssize_t)sizeof v &&
                 recv_exact(k->srv[i], &got, sizeof got) == 0 && got == v;
        got = 0;
        ok = ok && send(k->srv[i], &v, sizeof v, MSG_NOSIGNAL) == (ssize_t)sizeof v &&
             recv_exact(k->cli[i], &got, sizeof got) == 0 && got == v;
        if (!wl_check(c, ok, "conn %ld (fds %d/%d): round %llu: %s", i, k->cli[i], k->srv[i],
                      (unsigned long long)k->round, strerror(errno)))
            bad++;
    }
    k->consumed = 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CTL_DIR N\n", argv[0]);
        return 2;
    }
    const char *ctl = argv[1];
    struct conns k = {0};
    k.n = atol(argv[2]);
    if (k.n <= 0)
        wl_die("bad N %s", argv[2]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        wl_die("getrlimit");
    k.soft = (rlim_t)(2 * k.n + 64);
    if (k.soft > rl.rlim_max)
        wl_die("%ld connections need %llu fds, the hard limit is %llu", k.n, (unsigned long long)k.soft,
               (unsigned long long)rl.rlim_max);
    rl.rlim_cur = k.soft;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        wl_die("setrlimit RLIMIT_NOFILE %llu", (unsigned long long)k.soft);
    k.cli = calloc((size_t)k.n, sizeof(int));
    k.srv = calloc((size_t)k.n, sizeof(int));
    if (!k.cli || !k.srv)
        wl_die("calloc");

    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 128) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        wl_die("listener");
    struct timeval tv = {.tv_sec = 5};
    char buf[QUEUED];
    for (long i = 0; i < k.n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0)
            wl_die("connection %ld", i);
        int s = accept(l, NULL, NULL);
        if (s < 0)
            wl_die("accept of connection %ld", i);
        if (setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
            setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
            wl_die("SO_RCVTIMEO");
        wl_fill(buf, QUEUED, 2 * (uint64_t)i);
        if (send(c, buf, QUEUED, 0) != QUEUED)
            wl_die("send on connection %ld", i);
        wl_fill(buf, QUEUED, 2 * (uint64_t)i + 1);
        if (send(s, buf, QUEUED, 0) != QUEUED)
            wl_die("send on connection %ld", i);
        k.cli[i] = c;
        k.srv[i] = s;
    }
    close(l);
    char summary[128];
    snprintf(summary, sizeof summary, "manyconns n=%ld soft=%llu", k.n, (unsigned long long)k.soft);
    wl_ready(ctl);
    wl_serve(ctl, check_conns, &k, summary);
}
