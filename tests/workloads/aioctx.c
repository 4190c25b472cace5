/* aioctx: a Linux AIO context (io_setup(2), the /[aio] mapping) used before
 * the dump and after the restore through the same aio_context_t
 * (tests/e2e/test_aioctx.py).
 * Default mode: io_setup(32); "aioctx.data" in the control directory (64 KiB
 *   of a known pattern), opened read-only; 40 reads of 4 KiB submitted in
 *   batches of 8 and reaped (io_getevents) before ready. verify: the ring's
 *   header (magic, head == tail: nothing left), then 8 more reads of the file
 *   on the same context, reaped and checked (data, obj, res, bytes), and
 *   nothing more to reap; "exit": io_destroy succeeds.
 * Mode "inflight": also a poll (IOCB_CMD_POLL) of an empty pipe, in flight.
 * Mode "unreaped": one completion (data 999) left in the ring.
 * Mode "threads": a second thread, asleep.
 * Protocol: wl_common.h.
 */
#include "wl_common.h"

#include <linux/aio_abi.h>
#include <poll.h>
#include <pthread.h>

#define FILE_BYTES (64 * 1024)
#define IO_BYTES 4096
#define BATCH 8

static aio_context_t ctx;
static int data_fd = -1;
static char ref[FILE_BYTES];
static char bufs[BATCH][IO_BYTES] __attribute__((aligned(4096)));
static struct iocb cbs[BATCH];
static uint64_t seq = 1;
static int pending; /* mode "unreaped": the completion left in the ring */
static int pipe_fds[2] = {-1, -1};

struct ring_header {
    uint32_t id, nr, head, tail, magic;
};

static long io_submit_(aio_context_t c, long n, struct iocb **l) { return syscall(SYS_io_submit, c, n, l); }
static long io_getevents_(aio_context_t c, long min, long max, struct io_event *ev, struct timespec *ts)
{
    return syscall(SYS_io_getevents, c, min, max, ev, ts);
}

static uint64_t offset_of(uint64_t s) { return (s * 7 % (FILE_BYTES / IO_BYTES)) * IO_BYTES; }

/* Submits BATCH reads (data seq..seq+BATCH-1); -1 on failure. */
static int submit_batch(void)
{
    struct iocb *list[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memset(&cbs[i], 0, sizeof cbs[i]);
        cbs[i].aio_data = seq + (uint64_t)i;
        cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
        cbs[i].aio_fildes = (uint32_t)data_fd;
        cbs[i].aio_buf = (uint64_t)(uintptr_t)bufs[i];
        cbs[i].aio_nbytes = IO_BYTES;
        cbs[i].aio_offset = (int64_t)offset_of(seq + (uint64_t)i);
        memset(bufs[i], 0, IO_BYTES);
        list[i] = &cbs[i];
    }
    return io_submit_(ctx, BATCH, list) == BATCH ? 0 : -1;
}

/* Reaps the batch and checks each completion; returns the failures. */
static int reap_batch(struct wl_checks *c)
{
    struct io_event ev[BATCH];
    struct timespec ts = {10, 0};
    long n = io_getevents_(ctx, BATCH, BATCH, ev, &ts);
    int bad = !wl_check(c, n == BATCH, "io_getevents: %ld completions of %d (errno %d)", n, BATCH, errno);
    for (long i = 0; i < n && i < BATCH; i++) {
        uint64_t k = ev[i].data - seq;
        if (!wl_check(c, k < BATCH, "completion %ld: data %llu, not one of %llu..%llu", i,
                      (unsigned long long)ev[i].data, (unsigned long long)seq, (unsigned long long)seq + BATCH - 1)) {
            bad++;
            continue;
        }
        bad += !wl_check(c, ev[i].obj == (uint64_t)(uintptr_t)&cbs[k], "completion of read %llu: obj %#llx, not its iocb",
                         (unsigned long long)ev[i].data, (unsigned long long)ev[i].obj);
        bad += !wl_check(c, ev[i].res == IO_BYTES, "read %llu: res %lld, expected %d", (unsigned long long)ev[i].data,
                         (long long)ev[i].res, IO_BYTES);
        bad += !wl_check(c, memcmp(bufs[k], ref + offset_of(ev[i].data), IO_BYTES) == 0,
                         "read %llu: bytes differ from the file's", (unsigned long long)ev[i].data);
    }
    seq += BATCH;
    return bad;
}

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    struct timespec zero = {0, 0};
    struct io_event ev[4];
    if (pending) {
        long n = io_getevents_(ctx, 1, 1, ev, &zero);
        wl_check(c, n == 1 && ev[0].data == 999, "the completion left unreaped: %ld, data %llu", n,
                 n == 1 ? (unsigned long long)ev[0].data : 0ULL);
        pending = 0;
    }
    const struct ring_header *h = (const struct ring_header *)(uintptr_t)ctx;
    wl_check(c, h->magic == 0xa10a10a1 && h->head == h->tail, "ring header: magic %#x head %u tail %u", h->magic,
             h->head, h->tail);
    if (wl_check(c, submit_batch() == 0, "io_submit of %d reads on the context: errno %d", BATCH, errno))
        reap_batch(c);
    wl_check(c, io_getevents_(ctx, 0, 4, ev, &zero) == 0, "a completion nobody submitted in the ring");
    if (exiting)
        wl_check(c, syscall(SYS_io_destroy, ctx) == 0, "io_destroy: errno %d", errno);
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: aioctx CTL_DIR [inflight|unreaped|threads]");
    const char *ctl = argv[1];
    const char *mode = argc > 2 ? argv[2] : "";
    char path[WL_PATH_MAX];
    wl_path(path, sizeof path, ctl, "aioctx.data");
    wl_fill(ref, sizeof ref, 900);
    int w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w < 0 || wl_pwrite_all(w, ref, sizeof ref, 0) != 0 || close(w) != 0)
        wl_die("writing %s", path);
    data_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (data_fd < 0)
        wl_die("open %s", path);
    if (syscall(SYS_io_setup, 32, &ctx) != 0)
        wl_die("io_setup");
    struct wl_checks c;
    wl_checks_init(&c);
    for (int b = 0; b < 5; b++) {
        if (submit_batch() != 0)
            wl_die("io_submit");
        if (reap_batch(&c))
            wl_die("reads before the dump: %s", c.msg);
    }
    if (strcmp(mode, "inflight") == 0) {
        if (pipe2(pipe_fds, O_CLOEXEC) != 0)
            wl_die("pipe2");
        static struct iocb poll_cb;
        poll_cb.aio_data = 777;
        poll_cb.aio_lio_opcode = IOCB_CMD_POLL;
        poll_cb.aio_fildes = (uint32_t)pipe_fds[0];
        poll_cb.aio_buf = POLLIN;
        struct iocb *list[1] = {&poll_cb};
        if (io_submit_(ctx, 1, list) != 1)
            wl_die("io_submit of a poll");
    } else if (strcmp(mode, "unreaped") == 0) {
        static struct iocb cb;
        static char one[IO_BYTES];
        cb.aio_data = 999;
        cb.aio_lio_opcode = IOCB_CMD_PREAD;
        cb.aio_fildes = (uint32_t)data_fd;
        cb.aio_buf = (uint64_t)(uintptr_t)one;
        cb.aio_nbytes = IO_BYTES;
        struct iocb *list[1] = {&cb};
        if (io_submit_(ctx, 1, list) != 1)
            wl_die("io_submit");
        pending = 1;
    } else if (strcmp(mode, "threads") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, sleeper, NULL) != 0)
            wl_die("pthread_create");
    } else if (*mode) {
        wl_die("unknown mode %s", mode);
    }
    wl_ready(ctl);
    wl_serve(ctl, check, NULL, "an AIO context used on both sides of the checkpoint");
}
