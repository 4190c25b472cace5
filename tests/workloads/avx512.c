/* avx512: checks that the extended register state survives a checkpoint.
 *
 * In ONE asm block (so the compiler cannot touch the registers in between)
 * it loads distinct patterns into zmm0..zmm31, k0..k7, MXCSR, the x87
 * control word and 12 general purpose registers (rbx rcx rdx rsi r8..r15),
 * spins until a volatile flag becomes non-zero, then stores everything to
 * memory.  The flag is set by a SIGUSR1 handler (the kernel saves and
 * restores the full register state around the handler).  After the spin it
 * compares with the patterns, writes <ctl>/result ("OK ..." / "FAIL ...")
 * and exits 0 / 1.
 *
 * Protocol difference from the other workloads: there is no `verify` file,
 * the harness sends SIGUSR1.  <ctl>/ready is written just before the asm
 * block.  k registers are loaded 64 bits wide (kmovq) when the CPU has
 * AVX512BW, else 16 bits wide (kmovw).
 *
 * Usage: avx512 CTL_DIR
 */
#include "wl_common.h"

#include <signal.h>
#include <stddef.h>

#define N_GPR 12
static const char *const gpr_names[N_GPR] = { "rbx", "rcx", "rdx", "rsi", "r8",  "r9",
                                              "r10", "r11", "r12", "r13", "r14", "r15" };

struct regs {
    unsigned char zmm[32][64]; /* offset 0 */
    uint64_t k[8];             /* offset 2048 */
    uint32_t mxcsr;            /* offset 2112 */
    uint16_t fcw;              /* offset 2116 */
    uint16_t pad;
    uint64_t gpr[N_GPR];       /* offset 2120 */
    uint32_t mxcsr_default;    /* offset 2216 */
    uint16_t fcw_default;      /* offset 2220 */
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct regs, k) == 2048, "k offset");
_Static_assert(offsetof(struct regs, mxcsr) == 2112, "mxcsr offset");
_Static_assert(offsetof(struct regs, fcw) == 2116, "fcw offset");
_Static_assert(offsetof(struct regs, gpr) == 2120, "gpr offset");
_Static_assert(offsetof(struct regs, mxcsr_default) == 2216, "mxcsr_default offset");
_Static_assert(offsetof(struct regs, fcw_default) == 2220, "fcw_default offset");

static volatile int go_flag;
static volatile sig_atomic_t usr1_seen;

static void usr1_handler(int sig)
{
    (void)sig;
    usr1_seen++;
    go_flag = 1;
}

#define ZL(i) "vmovdqu64 " #i "*64(%%rax), %%zmm" #i "\n\t"
#define ZS(i) "vmovdqu64 %%zmm" #i ", " #i "*64(%%rdi)\n\t"
#define ZL8(a, b, c, d, e, f, g, h) ZL(a) ZL(b) ZL(c) ZL(d) ZL(e) ZL(f) ZL(g) ZL(h)
#define ZS8(a, b, c, d, e, f, g, h) ZS(a) ZS(b) ZS(c) ZS(d) ZS(e) ZS(f) ZS(g) ZS(h)
#define KL(op, i) op " 2048+" #i "*8(%%rax), %%k" #i "\n\t"
#define KS(op, i) op " %%k" #i ", 2048+" #i "*8(%%rdi)\n\t"
#define KL8(op) KL(op, 0) KL(op, 1) KL(op, 2) KL(op, 3) KL(op, 4) KL(op, 5) KL(op, 6) KL(op, 7)
#define KS8(op) KS(op, 0) KS(op, 1) KS(op, 2) KS(op, 3) KS(op, 4) KS(op, 5) KS(op, 6) KS(op, 7)
#define GL(j, r) "mov 2120+" #j "*8(%%rax), %%" #r "\n\t"
#define GS(j, r) "mov %%" #r ", 2120+" #j "*8(%%rdi)\n\t"
#define GPRS(M)                                                                                \
    M(0, rbx) M(1, rcx) M(2, rdx) M(3, rsi) M(4, r8) M(5, r9) M(6, r10) M(7, r11) M(8, r12)    \
        M(9, r13) M(10, r14) M(11, r15)

#define SPIN_FUNC(name, kmov)                                                                  \
    static void name(const struct regs *in, struct regs *out)                                  \
    {                                                                                          \
        __asm__ volatile(ZL8(0, 1, 2, 3, 4, 5, 6, 7) ZL8(8, 9, 10, 11, 12, 13, 14, 15)         \
                             ZL8(16, 17, 18, 19, 20, 21, 22, 23)                               \
                                 ZL8(24, 25, 26, 27, 28, 29, 30, 31) KL8(kmov)                 \
                                     "ldmxcsr 2112(%%rax)\n\t"                                 \
                                     "fldcw 2116(%%rax)\n\t" GPRS(GL)                          \
                                     "1:\n\t"                                                  \
                                     "pause\n\t"                                               \
                                     "cmpl $0, %[flag]\n\t"                                    \
                                     "je 1b\n\t" GPRS(GS) KS8(kmov)                            \
                                     "stmxcsr 2112(%%rdi)\n\t"                                 \
                                     "fnstcw 2116(%%rdi)\n\t" ZS8(0, 1, 2, 3, 4, 5, 6, 7)      \
                                         ZS8(8, 9, 10, 11, 12, 13, 14, 15)                     \
                                             ZS8(16, 17, 18, 19, 20, 21, 22, 23)               \
                                                 ZS8(24, 25, 26, 27, 28, 29, 30, 31)           \
                                                     "ldmxcsr 2216(%%rax)\n\t"                 \
                                                     "fldcw 2220(%%rax)\n\t"                   \
                                                     "vzeroupper\n\t"                          \
                         :                                                                     \
                         : "a"(in), "D"(out), [flag] "m"(go_flag)                              \
                         : "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r12", "r13", \
                           "r14", "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",       \
                           "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
                           "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",      \
                           "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27",      \
                           "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4",   \
                           "k5", "k6", "k7", "memory", "cc");                                  \
    }

SPIN_FUNC(spin_kmovq, "kmovq")
SPIN_FUNC(spin_kmovw, "kmovw")

static struct regs in_regs, out_regs;

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CTL_DIR\n", argv[0]);
        return 2;
    }
    const char *ctl = argv[1];
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        errno = ENOTSUP;
        wl_die("CPU lacks AVX-512F: this workload cannot run here");
    }
    const int wide_k = __builtin_cpu_supports("avx512bw");
    const uint64_t kmask = wide_k ? ~0ULL : 0xffffULL;
    const pid_t my_pid = wl_getpid();

    for (int r = 0; r < 32; r++)
        wl_fill(in_regs.zmm[r], 64, 0xA000 + (uint64_t)r);
    for (int i = 0; i < 8; i++)
        in_regs.k[i] = wl_pat(0xB000, (uint64_t)i) & kmask;
    in_regs.mxcsr = 0xFFC0;  /* all exceptions masked, round toward zero, FTZ, DAZ */
    in_regs.fcw = 0x0F7F;    /* round toward zero, extended precision */
    for (int j = 0; j < N_GPR; j++)
        in_regs.gpr[j] = wl_pat(0xC000, (uint64_t)j);
    in_regs.mxcsr_default = 0x1F80;
    in_regs.fcw_default = 0x037F;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = usr1_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) < 0)
        wl_die("sigaction");

    wl_ready(ctl);
    if (wide_k)
        spin_kmovq(&in_regs, &out_regs);
    else
        spin_kmovw(&in_regs, &out_regs);

    struct wl_checks c;
    wl_checks_init(&c);
    pid_t pid = wl_getpid();
    wl_check(&c, pid == my_pid, "pid expected %d actual %d", (int)my_pid, (int)pid);
    wl_check(&c, usr1_seen == 1, "SIGUSR1 handler runs: expected 1 actual %d", (int)usr1_seen);
    for (int r = 0; r < 32; r++) {
        const uint64_t *e = (const uint64_t *)in_regs.zmm[r];
        const uint64_t *a = (const uint64_t *)out_regs.zmm[r];
        int bad = -1;
        for (int w = 0; w < 8 && bad < 0; w++)
            if (e[w] != a[w])
                bad = w;
        wl_check(&c, bad < 0, "zmm%d qword %d: expected 0x%016llx actual 0x%016llx", r, bad,
                 (unsigned long long)(bad < 0 ? 0 : e[bad]),
                 (unsigned long long)(bad < 0 ? 0 : a[bad]));
    }
    for (int i = 0; i < 8; i++)
        wl_check(&c, (out_regs.k[i] & kmask) == in_regs.k[i],
                 "k%d: expected 0x%016llx actual 0x%016llx", i, (unsigned long long)in_regs.k[i],
                 (unsigned long long)(out_regs.k[i] & kmask));
    wl_check(&c, out_regs.mxcsr == in_regs.mxcsr, "mxcsr: expected 0x%x actual 0x%x",
             in_regs.mxcsr, out_regs.mxcsr);
    wl_check(&c, out_regs.fcw == in_regs.fcw, "x87 control word: expected 0x%x actual 0x%x",
             in_regs.fcw, out_regs.fcw);
    for (int j = 0; j < N_GPR; j++)
        wl_check(&c, out_regs.gpr[j] == in_regs.gpr[j], "%s: expected 0x%016llx actual 0x%016llx",
                 gpr_names[j], (unsigned long long)in_regs.gpr[j],
                 (unsigned long long)out_regs.gpr[j]);

    char summary[256];
    snprintf(summary, sizeof summary, "avx512 checks=%d zmm=32 k=8 (%d-bit) mxcsr fcw gprs=%d pid=%d",
             c.total, wide_k ? 64 : 16, N_GPR, (int)pid);
    return wl_report(ctl, &c, summary) ? 0 : 1;
}
