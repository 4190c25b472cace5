/* ticker: the program inside the golden images. Freestanding (no libc, no
 * shared libraries), so an image of it restores on any machine of the same
 * kernel and CPU kind once this binary sits at /tmp/cryo-golden/ticker.
 * It appends "tick N\n" to /tmp/cryo-golden/out (fd 3) every 50 ms, N counting
 * on from wherever it was, and keeps a checksum of its counter in another
 * register-held variable to catch a mis-restored state.
 * Build: gcc -O1 -static -nostdlib -fno-stack-protector -fno-pie -no-pie -o ticker ticker.c
 */
typedef unsigned long u64;

static long sys(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static volatile u64 counter;
static volatile u64 shadow;  /* always counter * 7 + 3 */

static int fmt(char *buf, u64 v) {
  char tmp[24];
  int n = 0, i = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
  while (n) buf[i++] = tmp[--n];
  return i;
}

void _start(void) {
  static const char path[] = "/tmp/cryo-golden/out";
  long fd = sys(2 /* open */, (long)path, 02 | 02000 | 0100 /* O_RDWR|O_APPEND|O_CREAT */, 0600);
  if (fd != 3) sys(33 /* dup2 */, fd, 3, 0);
  shadow = 3;
  for (;;) {
    char line[40] = "tick ";
    int n = 5 + fmt(line + 5, counter);
    if (shadow != counter * 7 + 3) {
      static const char bad[] = "CORRUPT\n";
      sys(1, 3, (long)bad, sizeof bad - 1);
      sys(60 /* exit */, 3, 0, 0);
    }
    line[n++] = '\n';
    sys(1 /* write */, 3, (long)line, n);
    counter++;
    shadow = counter * 7 + 3;
    struct { long s, ns; } ts = {0, 50000000};
    sys(35 /* nanosleep */, (long)&ts, 0, 0);
  }
}
