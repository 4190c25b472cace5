/* unixsk: connected UNIX sockets across the processes of a tree.
 *
 * Usage: unixsk CTL_DIR
 *
 * A parent and its child share socketpairs of each type (stream, datagram,
 * seqpacket), non-blocking. Both keep filling the other's queue until it is
 * full (EAGAIN) and read a few messages at a time, checking the sequence:
 * stream: 8-byte sequence numbers, written 512 at a time; datagram and seqpacket: message s is
 * empty when s % 50 == 0, else its 8-byte number and s % 200 bytes of s & 0xff
 * (boundaries kept, zero-length messages kept). So at any checkpoint the
 * queues of both directions are full.
 * Other pairs, idle:
 * - "half": the child wrote kBye and shut its end down for writing; the parent
 *   never reads it (peeks it at verify). The parent's end is bound to the
 *   abstract name @cryo-unixsk-PID, the child's to CTL_DIR/half.sock.
 * - "orphan": the child wrote kLast and closed its end (its peer was closed).
 * - "opts": options SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_PEEK_OFF,
 *   SO_RCVTIMEO, SO_SNDTIMEO on the parent's end.
 * - a datagram server, not connected, bound to @cryo-unixsk-srv-PID, holding
 *   messages from a client connected to it (its default peer, bound to
 *   CTL_DIR/client.sock) and from an unnamed socket (one of them empty); the
 *   client holds the server's reply (sent to it by name).
 * Verify (parent): both sides' counts advanced in every direction, no error;
 * the idle pairs as set (bytes peeked, EOF seen by poll, names, options); the
 * server's and the client's queues read with their senders' names, then sent
 * again the same way for the next verify.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "wl_common.h"

enum { STREAM, DGRAM, SEQ, NCHAN };
static const int kTypes[NCHAN] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
static const char *kNames[NCHAN] = {"stream", "dgram", "seqpacket"};
static const char kBye[] = "bye from the child, shut down for writing";
static const char kLast[] = "last words before close";

struct side {
    volatile long rx[NCHAN], tx[NCHAN], errors;
    char what[160];
};
struct board {
    struct side s[2]; /* 0: parent, 1: child */
};

struct chan {
    int fd, type;
    long tx, rx;
    long wbuf[512];   /* stream: a batch of numbers being written */
    unsigned char rbuf[8];
    int wpos, wend, rlen; /* stream: bytes of the batch written / in it; bytes of the number read */
};

static int msg_len(long s) { return s % 50 == 0 ? 0 : 8 + (int)(s % 200); }

static void make_msg(long s, unsigned char *buf)
{
    int n = msg_len(s);
    if (!n)
        return;
    memcpy(buf, &s, 8);
    memset(buf + 8, (int)(s & 0xff), (size_t)n - 8);
}

static void fail(struct side *me, const char *fmt, long a, long b)
{
    me->errors++;
    snprintf(me->what, sizeof me->what, fmt, a, b);
}

static void fill(struct chan *c, struct side *me)
{
    unsigned char buf[256];
    for (;;) {
        if (c->type == SOCK_STREAM) {
            if (c->wpos == c->wend) {
                for (int i = 0; i < 512; i++)
                    c->wbuf[i] = c->tx + i;
                c->wpos = 0;
                c->wend = (int)sizeof c->wbuf;
            }
            ssize_t n = send(c->fd, (char *)c->wbuf + c->wpos, (size_t)(c->wend - c->wpos), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0)
                break;
            c->wpos += (int)n;
            if (c->wpos < c->wend)
                continue;
            c->tx += 512;
            continue;
        } else {
            make_msg(c->tx, buf);
            ssize_t n = send(c->fd, buf, (size_t)msg_len(c->tx), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0)
                break;
            if (n != msg_len(c->tx))
                fail(me, "sent %ld of %ld bytes", (long)n, (long)msg_len(c->tx));
        }
        c->tx++;
    }
    if (errno != EAGAIN)
        fail(me, "send failed, errno %ld (seq %ld)", errno, c->tx);
}

static void drain(struct chan *c, struct side *me, int max)
{
    unsigned char buf[512], want[256];
    for (int i = 0; i < max; i++) {
        if (c->type == SOCK_STREAM) {
            ssize_t n = recv(c->fd, c->rbuf + c->rlen, (size_t)(8 - c->rlen), MSG_DONTWAIT);
            if (n <= 0) {
                if (n == 0 || errno != EAGAIN)
                    fail(me, "stream recv %ld errno %ld", (long)n, errno);
                return;
            }
            c->rlen += (int)n;
            if (c->rlen < 8)
                continue;
            c->rlen = 0;
            long got;
            memcpy(&got, c->rbuf, 8);
            if (got != c->rx)
                fail(me, "stream: got %ld, expected %ld", got, c->rx);
            c->rx = got + 1;
        } else {
            ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0) {
                if (errno != EAGAIN)
                    fail(me, "recv errno %ld (seq %ld)", errno, c->rx);
                return;
            }
            make_msg(c->rx, want);
            if (n != msg_len(c->rx) || memcmp(buf, want, (size_t)n) != 0) {
                long got = n >= 8 ? *(long *)buf : -1;
                fail(me, "message: got seq %ld, expected %ld", got, c->rx);
                c->rx = got >= 0 ? got : c->rx;
            }
            c->rx++;
        }
    }
}

static void pump(struct chan *ch, struct side *me)
{
    for (int i = 0; i < NCHAN; i++) {
        fill(&ch[i], me);
        drain(&ch[i], me, ch[i].type == SOCK_STREAM ? 600 : 24);
        me->tx[i] = ch[i].tx;
        me->rx[i] = ch[i].rx;
    }
}

static void set_int(int fd, int name, int v)
{
    if (setsockopt(fd, SOL_SOCKET, name, &v, sizeof v) != 0)
        wl_die("setsockopt %d", name);
}

static int get_int(int fd, int name)
{
    int v = -12345;
    socklen_t len = sizeof v;
    getsockopt(fd, SOL_SOCKET, name, &v, &len);
    return v;
}

static socklen_t set_name(struct sockaddr_un *a, const char *name, int abstract)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 1));
}

/* The datagram server and its senders (parent only). */
struct dgram_set {
    int server, client, unnamed;
    struct sockaddr_un srv, cli;
    socklen_t srv_len, cli_len;
};
static const char *kToServer[] = {"from the client #0", "from the client #1", "", "from an unnamed socket"};

static void dgram_send_all(struct dgram_set *d)
{
    for (int i = 0; i < 4; i++) {
        ssize_t n = i < 2 ? send(d->client, kToServer[i], strlen(kToServer[i]), 0)
                          : sendto(d->unnamed, kToServer[i], strlen(kToServer[i]), 0, (struct sockaddr *)&d->srv,
                                   d->srv_len);
        if (n != (ssize_t)strlen(kToServer[i]))
            wl_die("datagram %d to the server", i);
    }
    if (sendto(d->server, "reply", 5, 0, (struct sockaddr *)&d->cli, d->cli_len) != 5)
        wl_die("reply to the client");
}

static void dgram_setup(struct dgram_set *d, const char *ctl)
{
    char name[64], path[WL_PATH_MAX];
    snprintf(name, sizeof name, "cryo-unixsk-srv-%d", (int)getpid());
    wl_path(path, sizeof path, ctl, "client.sock");
    memset(d, 0, sizeof *d);
    d->srv.sun_family = d->cli.sun_family = AF_UNIX;
    memcpy(d->srv.sun_path + 1, name, strlen(name));
    d->srv_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    if (strlen(path) >= sizeof d->cli.sun_path)
        wl_die("path too long for a socket: %s", path);
    memcpy(d->cli.sun_path, path, strlen(path) + 1);
    d->cli_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    d->server = socket(AF_UNIX, SOCK_DGRAM, 0);
    d->client = socket(AF_UNIX, SOCK_DGRAM, 0);
    d->unnamed = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (d->server < 0 || d->client < 0 || d->unnamed < 0 || bind(d->server, (struct sockaddr *)&d->srv, d->srv_len) ||
        bind(d->client, (struct sockaddr *)&d->cli, d->cli_len) ||
        connect(d->client, (struct sockaddr *)&d->srv, d->srv_len))
        wl_die("datagram server setup");
    dgram_send_all(d);
}

static void dgram_check(struct dgram_set *d, struct wl_checks *c)
{
    char buf[128];
    struct sockaddr_un from;
    for (int i = 0; i < 4; i++) {
        socklen_t flen = sizeof from;
        memset(&from, 0, sizeof from);
        ssize_t n = recvfrom(d->server, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        int named = i < 2;
        wl_check(c, n == (ssize_t)strlen(kToServer[i]) && memcmp(buf, kToServer[i], (size_t)n) == 0,
                 "server message %d: %zd bytes '%.*s', expected '%s'", i, n, (int)(n > 0 ? n : 0), buf, kToServer[i]);
        wl_check(c, named ? (flen == d->cli_len && strcmp(from.sun_path, d->cli.sun_path) == 0)
                          : (flen == 0 || flen == sizeof(sa_family_t)),
                 "server message %d: sender name '%s' (length %d)", i, from.sun_path, (int)flen);
    }
    ssize_t n = recv(d->server, buf, sizeof buf, MSG_DONTWAIT);
    wl_check(c, n < 0 && errno == EAGAIN, "server: a fifth message (%zd bytes)", n);
    socklen_t flen = sizeof from;
    n = recvfrom(d->client, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
    wl_check(c, n == 5 && memcmp(buf, "reply", 5) == 0 && flen == d->srv_len && memcmp(&from, &d->srv, flen) == 0,
             "client: reply of %zd bytes from a sender of name length %d", n, (int)flen);
    flen = sizeof from;
    wl_check(c, getpeername(d->client, (struct sockaddr *)&from, &flen) == 0 && flen == d->srv_len &&
                    memcmp(&from, &d->srv, flen) == 0,
             "client: peer name of length %d, expected the server's", (int)flen);
    dgram_send_all(d);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    const char *ctl = argv[1];
    struct board *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        wl_die("mmap");
    int pairs[NCHAN][2], half[2], orphan[2], opts[2];
    for (int i = 0; i < NCHAN; i++)
        if (socketpair(AF_UNIX, kTypes[i] | SOCK_NONBLOCK, 0, pairs[i]) != 0)
            wl_die("socketpair %s", kNames[i]);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, half) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, orphan) ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, opts))
        wl_die("socketpair");
    char abstract[64], path[WL_PATH_MAX];
    snprintf(abstract, sizeof abstract, "cryo-unixsk-%d", (int)getpid());
    wl_path(path, sizeof path, ctl, "half.sock");
    struct sockaddr_un a;
    socklen_t alen = set_name(&a, abstract, 1);
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abstract));
    if (bind(half[0], (struct sockaddr *)&a, alen) != 0)
        wl_die("bind @%s", abstract);
    struct sockaddr_un p;
    socklen_t plen = set_name(&p, path, 0);
    if (bind(half[1], (struct sockaddr *)&p, plen) != 0)
        wl_die("bind %s", path);
    set_int(opts[0], SO_SNDBUF, 32768);
    set_int(opts[0], SO_RCVBUF, 50000);
    set_int(opts[0], SO_PASSCRED, 1);
    set_int(opts[0], SO_PEEK_OFF, 3);
    struct timeval rt = {7, 500000}, st = {3, 0};
    if (setsockopt(opts[0], SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt) ||
        setsockopt(opts[0], SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st))
        wl_die("timeouts");
    const int sndbuf = get_int(opts[0], SO_SNDBUF), rcvbuf = get_int(opts[0], SO_RCVBUF);

    pid_t child = fork();
    if (child < 0)
        wl_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct chan ch[NCHAN];
        memset(ch, 0, sizeof ch);
        for (int i = 0; i < NCHAN; i++) {
            close(pairs[i][0]);
            ch[i].fd = pairs[i][1];
            ch[i].type = kTypes[i];
        }
        close(half[0]);
        close(orphan[0]);
        close(opts[0]);
        if (send(half[1], kBye, sizeof kBye, 0) != sizeof kBye || shutdown(half[1], SHUT_WR) != 0)
            wl_die("half");
        if (send(orphan[1], kLast, sizeof kLast, 0) != sizeof kLast)
            wl_die("orphan");
        close(orphan[1]);
        for (;;) {
            pump(ch, &b->s[1]);
            wl_sleep_ms(1);
        }
    }
    struct chan ch[NCHAN];
    memset(ch, 0, sizeof ch);
    for (int i = 0; i < NCHAN; i++) {
        close(pairs[i][1]);
        ch[i].fd = pairs[i][0];
        ch[i].type = kTypes[i];
    }
    close(half[1]);
    close(orphan[1]);
    struct dgram_set dg;
    dgram_setup(&dg, ctl);
    int ready = 0;
    for (;;) {
        pump(ch, &b->s[0]);
        wl_sleep_ms(1);
        if (!ready) {
            int started = 1;
            for (int i = 0; i < NCHAN; i++)
                started &= b->s[0].rx[i] > 500 && b->s[1].rx[i] > 500;
            if (started) {
                wl_ready(ctl);
                ready = 1;
            }
            continue;
        }
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        struct wl_checks c;
        wl_checks_init(&c);
        long before[2][NCHAN];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < NCHAN; i++)
                before[s][i] = b->s[s].rx[i];
        for (int k = 0; k < 200; k++) {
            pump(ch, &b->s[0]);
            wl_sleep_ms(1);
        }
        for (int s = 0; s < 2; s++) {
            for (int i = 0; i < NCHAN; i++)
                wl_check(&c, b->s[s].rx[i] > before[s][i] + 100, "%s: %s received %ld, %ld before",
                         s ? "child" : "parent", kNames[i], b->s[s].rx[i], before[s][i]);
            wl_check(&c, b->s[s].errors == 0, "%s saw %ld errors, last: %s", s ? "child" : "parent",
                     b->s[s].errors, b->s[s].what);
        }
        /* half: kBye waits, then the end of file; the names. */
        char got[128] = "";
        ssize_t n = recv(half[0], got, sizeof got, MSG_PEEK | MSG_DONTWAIT);
        wl_check(&c, n == sizeof kBye && memcmp(got, kBye, sizeof kBye) == 0, "half: peeked %zd bytes '%.*s'", n,
                 (int)(n > 0 ? n : 0), got);
        struct pollfd pf = {half[0], POLLIN | POLLRDHUP, 0};
        wl_check(&c, poll(&pf, 1, 0) == 1 && (pf.revents & POLLRDHUP), "half: no end of file (revents %#x)",
                 pf.revents);
        wl_check(&c, send(half[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1, "half: cannot send back (errno %d)",
                 errno);
        struct sockaddr_un na;
        socklen_t nlen = sizeof na;
        wl_check(&c, getsockname(half[0], (struct sockaddr *)&na, &nlen) == 0 && nlen == alen &&
                         memcmp(&na, &a, alen) == 0,
                 "half: own name differs (length %d, expected %d)", (int)nlen, (int)alen);
        nlen = sizeof na;
        wl_check(&c, getpeername(half[0], (struct sockaddr *)&na, &nlen) == 0 && strcmp(na.sun_path, path) == 0,
                 "half: peer name '%s', expected '%s'", na.sun_path, path);
        struct stat sst;
        wl_check(&c, stat(path, &sst) == 0 && S_ISSOCK(sst.st_mode), "half: %s is not a socket file", path);
        /* orphan: kLast, then the peer is gone. */
        n = recv(orphan[0], got, sizeof got, MSG_PEEK | MSG_DONTWAIT);
        wl_check(&c, n == sizeof kLast && memcmp(got, kLast, sizeof kLast) == 0, "orphan: peeked %zd bytes", n);
        pf.fd = orphan[0];
        pf.revents = 0;
        wl_check(&c, poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP), "orphan: no hangup (revents %#x)", pf.revents);
        errno = 0;
        wl_check(&c, send(orphan[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE,
                 "orphan: send gave errno %d, expected EPIPE", errno);
        /* opts */
        wl_check(&c, get_int(opts[0], SO_SNDBUF) == sndbuf, "SO_SNDBUF %d expected %d", get_int(opts[0], SO_SNDBUF),
                 sndbuf);
        wl_check(&c, get_int(opts[0], SO_RCVBUF) == rcvbuf, "SO_RCVBUF %d expected %d", get_int(opts[0], SO_RCVBUF),
                 rcvbuf);
        wl_check(&c, get_int(opts[0], SO_PASSCRED) == 1, "SO_PASSCRED %d", get_int(opts[0], SO_PASSCRED));
        wl_check(&c, get_int(opts[0], SO_PEEK_OFF) == 3, "SO_PEEK_OFF %d", get_int(opts[0], SO_PEEK_OFF));
        struct timeval tv;
        socklen_t tl = sizeof tv;
        getsockopt(opts[0], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
        wl_check(&c, tv.tv_sec == 7 && tv.tv_usec == 500000, "SO_RCVTIMEO %ld.%06ld", (long)tv.tv_sec,
                 (long)tv.tv_usec);
        getsockopt(opts[0], SOL_SOCKET, SO_SNDTIMEO, &tv, &tl);
        wl_check(&c, tv.tv_sec == 3 && tv.tv_usec == 0, "SO_SNDTIMEO %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
        dgram_check(&dg, &c);
        int fl = fcntl(ch[0].fd, F_GETFL);
        wl_check(&c, (fl & O_NONBLOCK) != 0, "stream flags %#x: not O_NONBLOCK", fl);
        char summary[256];
        snprintf(summary, sizeof summary, "unixsk parent rx %ld/%ld/%ld child rx %ld/%ld/%ld", b->s[0].rx[0],
                 b->s[0].rx[1], b->s[0].rx[2], b->s[1].rx[0], b->s[1].rx[1], b->s[1].rx[2]);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            unlink(path);
            unlink(dg.cli.sun_path);
            return ok ? 0 : 1;
        }
    }
}
