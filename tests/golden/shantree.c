/* shantree: the program inside the shared-anonymous-memory golden image.
 * Freestanding like ticker.c. A parent and a child share a page of
 * MAP_SHARED|MAP_ANONYMOUS memory: the parent counts in it, the child appends
 * "tick N\n" to /tmp/cryo-golden/out (fd 3) for each number and acknowledges
 * it there. If the page stops being shared after a restore, the child sees no
 * new number and the ticks stop; if its content is lost, the numbers restart
 * from 0 and the checks write CORRUPT.
 * Build: gcc -O1 -static -nostdlib -fno-stack-protector -fno-pie -no-pie -o shantree shantree.c
 */
typedef unsigned long u64;

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return r;
}
#define sys(n, a, b, c) sys6(n, a, b, c, 0, 0, 0)

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
  sys(231 /* exit_group */, 3, 0, 0);
}

struct board {
  volatile u64 counter; /* written after shadow */
  volatile u64 shadow;  /* always counter * 7 + 3 once counter is set */
  volatile u64 ack;     /* the last number the child wrote */
};

static void nap(long ns) {
  struct { long s, ns; } ts = {0, ns};
  sys(35 /* nanosleep */, (long)&ts, 0, 0);
}

void _start(void) {
  static const char path[] = "/tmp/cryo-golden/out";
  long fd = sys(2 /* open */, (long)path, 02 | 02000 | 0100 /* O_RDWR|O_APPEND|O_CREAT */, 0600);
  if (fd != 3) sys(33 /* dup2 */, fd, 3, 0);
  /* mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0) */
  struct board *b = (struct board *)sys6(9, 0, 8192, 3, 0x01 | 0x20, -1, 0);
  if ((u64)b > (u64)-4096) corrupt();
  b->shadow = 3;
  if (sys(57 /* fork */, 0, 0, 0) == 0) {
    sys(157 /* prctl */, 1 /* PR_SET_PDEATHSIG */, 9 /* SIGKILL */, 0);
    for (;;) {
      u64 v = b->counter;
      if (v != b->ack) {
        if (b->shadow != v * 7 + 3) corrupt();
        if (b->ack && v != b->ack + 1) corrupt();
        char line[40] = "tick ";
        int n = 5 + fmt(line + 5, v);
        line[n++] = '\n';
        sys(1 /* write */, 3, (long)line, n);
        b->ack = v;
      }
      nap(5000000);
    }
  }
  for (;;) {
    if (b->ack == b->counter) {
      u64 next = b->counter + 1;
      b->shadow = next * 7 + 3;
      __asm__ volatile("" ::: "memory");
      b->counter = next;
    }
    nap(50000000);
  }
}
