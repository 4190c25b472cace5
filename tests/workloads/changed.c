/* changed: a process holding files by path, for the refusal of files changed
 * since the dump (tests/e2e/test_changed.py).
 *
 * Usage: changed CTL_DIR   (run from a copy of this executable)
 *
 * CTL_DIR holds, made by the test: "data" (4096 bytes of pattern 1), "lib.so"
 * (a copy of a shared library), "dir" (a directory). The workload opens data
 * read-write and reads 100 bytes (offset 100), opens dir, maps lib.so
 * executable and private (as the dynamic loader maps code), opens "log" for
 * appending only and writes a line to it, and remembers the first 256 bytes
 * of the mapping. Verify: the pid, the data fd's offset (100) and its bytes
 * at 0..100 (pattern 1: the test never changes the first 100 bytes), the dir
 * fd is a directory, the mapping's first 256 bytes, and a counter advancing.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>

#include "wl_common.h"

static int data_fd, dir_fd, log_fd;
static unsigned char *code;
static unsigned char code_start[256];
static pid_t my_pid;
static volatile unsigned long counter;
static unsigned long last_counter;

static void check(struct wl_checks *c, int exiting, void *arg)
{
    (void)exiting;
    (void)arg;
    wl_check(c, wl_getpid() == my_pid, "pid %d, expected %d", (int)wl_getpid(), (int)my_pid);
    off_t pos = lseek(data_fd, 0, SEEK_CUR);
    wl_check(c, pos == 100, "data offset %lld, expected 100", (long long)pos);
    unsigned char head[100], want[4096];
    wl_fill(want, sizeof want, 1); /* the 4096-byte file's pattern */
    wl_check(c, wl_pread_full(data_fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
                    memcmp(head, want, sizeof head) == 0,
             "data's first 100 bytes differ");
    struct stat st;
    wl_check(c, fstat(dir_fd, &st) == 0 && S_ISDIR(st.st_mode), "dir fd is not a directory");
    wl_check(c, memcmp(code, code_start, sizeof code_start) == 0, "the mapping's first 256 bytes differ");
    unsigned long now = counter;
    wl_check(c, now > last_counter, "counter %lu did not advance from %lu", now, last_counter);
    last_counter = now;
    const char line[] = "verified\n";
    wl_check(c, write(log_fd, line, sizeof line - 1) == (ssize_t)(sizeof line - 1), "write to log");
}

int main(int argc, char **argv)
{
    if (argc != 2)
        wl_die("usage: changed CTL_DIR");
    const char *ctl = argv[1];
    char path[WL_PATH_MAX];
    my_pid = wl_getpid();
    wl_path(path, sizeof path, ctl, "data");
    data_fd = open(path, O_RDWR | O_CLOEXEC);
    if (data_fd < 0)
        wl_die("open %s", path);
    unsigned char skip[100];
    if (read(data_fd, skip, sizeof skip) != (ssize_t)sizeof skip)
        wl_die("read %s", path);
    wl_path(path, sizeof path, ctl, "dir");
    dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        wl_die("open %s", path);
    wl_path(path, sizeof path, ctl, "lib.so");
    int lib = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (lib < 0 || fstat(lib, &st) != 0 || st.st_size < 256)
        wl_die("open %s", path);
    code = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, lib, 0);
    if (code == MAP_FAILED)
        wl_die("mmap %s", path);
    close(lib);
    memcpy(code_start, code, sizeof code_start);
    wl_path(path, sizeof path, ctl, "log");
    log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0 || write(log_fd, "started\n", 8) != 8)
        wl_die("log %s", path);
    wl_ready(ctl);
    for (;;) {
        int req = wl_poll_verify(ctl);
        if (req == WL_VERIFY_NONE) {
            counter++;
            wl_sleep_ms(10);
            continue;
        }
        struct wl_checks c;
        wl_checks_init(&c);
        check(&c, req == WL_VERIFY_EXIT, NULL);
        int ok = wl_report(ctl, &c, "files held by path as they were");
        if (req == WL_VERIFY_EXIT)
            exit(ok ? 0 : 1);
    }
}
