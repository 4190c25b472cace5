/* fifo: FIFOs (named pipes) with data in flight.
 *
 * Usage: fifo CTL_DIR
 *
 * - CTL_DIR/stream: the parent writes a stream of sequence numbers into it as
 *   fast as the FIFO takes them (non-blocking, so it is always full), through
 *   an O_RDWR description; a child reads them one by one through its own
 *   O_RDONLY description and checks that each is the next one (no loss, no
 *   duplicate across the checkpoint). Its capacity is set to 128 KiB.
 * - CTL_DIR/parked: written once (a known message) through an O_WRONLY |
 *   O_NONBLOCK description, then nobody holds a read end: the bytes wait in
 *   the FIFO for a future reader.
 * Verify (in the parent): the child's count advanced and it saw no error; the
 *   capacity and flags are as set; the parked bytes are still there (read
 *   through a new read end, then written back so a later verify sees them too).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "wl_common.h"

#define CAPACITY (128 * 1024)
static const char kParked[] = "parked bytes waiting for a reader: 0123456789";

struct board {
    volatile long received;
    volatile long errors;
    char what[128];
};

static void consumer(const char *path, struct board *b)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        wl_die("open %s", path);
    long expect = 1;
    for (;;) {
        long seq;
        ssize_t n = read(fd, &seq, sizeof seq);
        if (n != sizeof seq) {
            b->errors++;
            snprintf(b->what, sizeof b->what, "short read %zd (errno %d)", n, errno);
            wl_sleep_ms(10);
            continue;
        }
        if (seq != expect) {
            b->errors++;
            snprintf(b->what, sizeof b->what, "got %ld expected %ld", seq, expect);
        }
        expect = seq + 1;
        b->received++;
        if (b->received % 64 == 0)
            wl_sleep_ms(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: %s CTL_DIR", argv[0]);
    const char *ctl = argv[1];
    char stream[WL_PATH_MAX], parked[WL_PATH_MAX];
    wl_path(stream, sizeof stream, ctl, "stream");
    wl_path(parked, sizeof parked, ctl, "parked");
    if (mkfifo(stream, 0640) != 0 || mkfifo(parked, 0600) != 0)
        wl_die("mkfifo");
    struct board *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        wl_die("mmap");

    int out = open(stream, O_RDWR | O_NONBLOCK);
    if (out < 0)
        wl_die("open %s", stream);
    if (fcntl(out, F_SETPIPE_SZ, CAPACITY) < CAPACITY)
        wl_die("F_SETPIPE_SZ");
    pid_t child = fork();
    if (child == 0) {
        close(out);
        consumer(stream, b);
    }
    int park_r = open(parked, O_RDONLY | O_NONBLOCK);
    int park_w = open(parked, O_WRONLY | O_NONBLOCK);
    if (park_r < 0 || park_w < 0)
        wl_die("open %s", parked);
    if (write(park_w, kParked, sizeof kParked) != sizeof kParked)
        wl_die("write %s", parked);
    close(park_r);

    long seq = 1;
    int ready = 0;
    for (;;) {
        /* Fill the stream until it is full. */
        for (;;) {
            ssize_t n = write(out, &seq, sizeof seq);
            if (n == sizeof seq) {
                seq++;
                continue;
            }
            if (n < 0 && errno == EAGAIN)
                break;
            wl_die("write %s", stream);
        }
        if (!ready && b->received > 1000) {
            wl_ready(ctl);
            ready = 1;
        }
        wl_sleep_ms(2);
        if (!ready)
            continue;
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE)
            continue;
        struct wl_checks c;
        wl_checks_init(&c);
        long before = b->received;
        /* Keep the stream going while the child reads. */
        for (int i = 0; i < 100; i++) {
            while (write(out, &seq, sizeof seq) == sizeof seq)
                seq++;
            wl_sleep_ms(2);
        }
        wl_check(&c, b->received > before, "the consumer did not advance (%ld)", b->received);
        wl_check(&c, b->errors == 0, "the consumer saw %ld errors, last: %s", b->errors, b->what);
        wl_check(&c, fcntl(out, F_GETPIPE_SZ) == CAPACITY, "stream capacity %d expected %d",
                 fcntl(out, F_GETPIPE_SZ), CAPACITY);
        int fl = fcntl(out, F_GETFL);
        wl_check(&c, (fl & O_ACCMODE) == O_RDWR && (fl & O_NONBLOCK), "stream flags %#x", fl);
        fl = fcntl(park_w, F_GETFL);
        wl_check(&c, (fl & O_ACCMODE) == O_WRONLY && (fl & O_NONBLOCK), "parked writer flags %#x", fl);
        int r = open(parked, O_RDONLY | O_NONBLOCK);
        char got[sizeof kParked + 16] = "";
        ssize_t n = r >= 0 ? read(r, got, sizeof got) : -1;
        wl_check(&c, n == sizeof kParked && memcmp(got, kParked, sizeof kParked) == 0,
                 "parked FIFO holds %zd bytes '%.*s', expected '%s'", n, (int)(n > 0 ? n : 0), got, kParked);
        if (n > 0 && write(park_w, got, (size_t)n) != n)
            wl_check(&c, 0, "writing the parked bytes back failed (errno %d)", errno);
        if (r >= 0)
            close(r);
        char summary[128];
        snprintf(summary, sizeof summary, "fifo received=%ld", b->received);
        int ok = wl_report(ctl, &c, summary);
        if (req == WL_VERIFY_EXIT) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            return ok ? 0 : 1;
        }
    }
}
