/* pipetree: the program inside the tree golden images. Freestanding like
 * ticker.c. The parent counts and sends each number through a pipe to a child,
 * which appends "tick N\n" to /tmp/cryo-golden/out (fd 3) and checks the
 * numbers follow each other; a second child exits with status 7 and is never
 * reaped (a zombie). The image holds two live processes, a zombie and a pipe.
 * Build: gcc -O1 -static -nostdlib -fno-stack-protector -fno-pie -no-pie -o pipetree pipetree.c
 */
typedef unsigned long u64;

static long sys(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static int fmt(char *buf, u64 v) {
  char tmp[24];
  int n = 0, i = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
  while (n) buf[i++] = tmp[--n];
  return i;
}

static void corrupt(void) {
  static const char bad[] = "CORRUPT\n";
  sys(1, 3, (long)bad, sizeof bad - 1);
  sys(60 /* exit */, 3, 0, 0);
}

static volatile u64 counter;
static volatile u64 shadow; /* always counter * 7 + 3 */

void _start(void) {
  static const char path[] = "/tmp/cryo-golden/out";
  long fd = sys(2 /* open */, (long)path, 02 | 02000 | 0100 /* O_RDWR|O_APPEND|O_CREAT */, 0600);
  if (fd != 3) sys(33 /* dup2 */, fd, 3, 0);
  int p[2];
  if (sys(22 /* pipe */, (long)p, 0, 0) != 0) corrupt();
  if (sys(57 /* fork */, 0, 0, 0) == 0) {
    sys(3 /* close */, p[1], 0, 0);
    u64 last = 0, v;
    for (;;) {
      if (sys(0 /* read */, p[0], (long)&v, sizeof v) != sizeof v) corrupt();
      if (last && v != last + 1) corrupt();
      last = v;
      char line[40] = "tick ";
      int n = 5 + fmt(line + 5, v);
      line[n++] = '\n';
      sys(1 /* write */, 3, (long)line, n);
    }
  }
  if (sys(57 /* fork */, 0, 0, 0) == 0) sys(60 /* exit */, 7, 0, 0);
  sys(3 /* close */, p[0], 0, 0);
  shadow = 3;
  for (;;) {
    if (shadow != counter * 7 + 3) corrupt();
    counter++;
    shadow = counter * 7 + 3;
    u64 v = counter;
    if (sys(1 /* write */, p[1], (long)&v, sizeof v) != sizeof v) corrupt();
    struct { long s, ns; } ts = {0, 50000000};
    sys(35 /* nanosleep */, (long)&ts, 0, 0);
  }
}
