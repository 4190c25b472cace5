// The restorer blob: freestanding, position-independent code that a restored
// process runs last, on its own stack, once everything of cryo in that process
// has served its purpose. It swaps the helper's address space for the image's
// (unmap everything else, mremap the premapped VMAs into place), then restores
// what only the process itself can set: mm fields, sigactions, sigaltstack,
// itimers, rseq, robust list, pending signals, credentials. It ends by stopping
// itself with SIGSTOP; cryo (its ptracer) then sets the registers and lets it go.
//
// No libc, no exceptions, no heap, no global data with addresses in it: the
// blob is copied to an arbitrary address and entered at offset 0.
#include <stddef.h>
#include <stdint.h>

#include "restorer/restorer_args.h"

using namespace cryo::restorer;

namespace {

// x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
enum : long {
  kWrite = 1, kClose = 3, kIoctl = 16, kMprotect = 10, kMunmap = 11, kRtSigaction = 13, kRtSigprocmask = 14, kMremap = 25,
  kSetitimer = 38, kGetpid = 39, kExitGroup = 231, kTgkill = 234, kSetresuid = 117, kSetresgid = 119,
  kSetfsuid = 122, kSetfsgid = 123, kCapset = 126, kRtSigqueueinfo = 129, kSigaltstack = 131, kPrctl = 157,
  kSetgroups = 116, kSetTidAddress = 218, kSetRobustList = 273, kRtTgsigqueueinfo = 297, kRseq = 334,
  kClone3 = 435, kNanosleep = 35, kCapget = 125, kSeccomp = 317, kRtSigtimedwait = 128,
};

inline long Sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

[[noreturn]] void Fail(const Args* a, const char* step, long err, uint64_t addr) {
  Failure f;
  char* p = reinterpret_cast<char*>(&f);
  for (size_t i = 0; i < sizeof(f); ++i) p[i] = 0;
  f.tag = 'B';
  f.pid = a->pid;
  f.err = static_cast<int32_t>(err < 0 ? -err : err);
  for (size_t i = 0; step[i] && i + 1 < sizeof(f.step); ++i) f.step[i] = step[i];
  f.addr = addr;
  Sys(kWrite, a->status_fd, reinterpret_cast<long>(&f), sizeof(f));
  for (;;) Sys(kExitGroup, 127);
}

inline bool Failed(long r) { return r < 0 && r > -4096; }

#define CHECK(a, call, step, addr)            \
  do {                                        \
    long _r = (call);                         \
    if (Failed(_r)) Fail(a, step, _r, addr);  \
  } while (0)

constexpr long kMremapMaymove = 1, kMremapFixed = 2;

void UnmapAllBut(const Args* a) {
  // keep[] is sorted by the helper.
  uint64_t from = 0;
  for (uint32_t i = 0; i < a->n_keep; ++i) {
    const Range& k = a->keep[i];
    if (k.start > from) CHECK(a, Sys(kMunmap, from, k.start - from), "munmap", from);
    from = k.start + k.len;
  }
  if (from < kTaskSize) CHECK(a, Sys(kMunmap, from, kTaskSize - from), "munmap", from);
}

void MoveSpecials(const Args* a) {
  uint64_t at = a->special_scratch;
  for (uint32_t i = 0; i < a->n_special; ++i) {
    const Move& m = a->special[i];
    CHECK(a, Sys(kMremap, m.from, m.len, m.len, kMremapMaymove | kMremapFixed, at), "mremap of the vDSO", m.from);
    at += m.len;
  }
  at = a->special_scratch;
  for (uint32_t i = 0; i < a->n_special; ++i) {
    const Move& m = a->special[i];
    CHECK(a, Sys(kMremap, at, m.len, m.len, kMremapMaymove | kMremapFixed, m.to), "mremap of the vDSO", m.to);
    at += m.len;
  }
}

void MoveVmas(const Args* a) {
  const Move* v = reinterpret_cast<const Move*>(reinterpret_cast<const char*>(a) + a->vmas_off);
  for (uint32_t i = 0; i < a->n_vmas; ++i)
    CHECK(a, Sys(kMremap, v[i].from, v[i].len, v[i].len, kMremapMaymove | kMremapFixed, v[i].to), "mremap of a VMA",
          v[i].to);
  if (a->premap.len) CHECK(a, Sys(kMunmap, a->premap.start, a->premap.len), "munmap of the premap area", a->premap.start);
  for (const Range& r : a->unmap_after)
    if (r.len) CHECK(a, Sys(kMunmap, r.start, r.len), "munmap of the premap window", r.start);
}

// cryo restore --lazy: the lazy VMAs are registered where they now are, in
// missing mode (userfaultfd(2)), before anything of the program's memory is
// touched (the rseq registration below makes the kernel write into its TLS):
// an access to a page not yet in waits for cryo, which copies it in
// (UFFDIO_COPY). The helper made the userfaultfd and set its features.
void RegisterLazy(const Args* a) {
  constexpr long kUffdioRegister = 0xc020aa00;  // _IOWR(0xAA, 0x00, struct uffdio_register)
  const Range* r = reinterpret_cast<const Range*>(reinterpret_cast<const char*>(a) + a->lazy_off);
  for (uint32_t i = 0; i < a->n_lazy; ++i) {
    struct {
      uint64_t start, len, mode, ioctls;
    } reg = {r[i].start, r[i].len, 1 /*UFFDIO_REGISTER_MODE_MISSING*/, 0};
    CHECK(a, Sys(kIoctl, a->uffd, kUffdioRegister, reinterpret_cast<long>(&reg)), "UFFDIO_REGISTER", r[i].start);
  }
}

void RestoreMm(Args* a) {
  a->mm_map.auxv = reinterpret_cast<uint64_t>(a->auxv);
  constexpr long kPrSetMm = 35, kPrSetMmMap = 14;
  CHECK(a, Sys(kPrctl, kPrSetMm, kPrSetMmMap, reinterpret_cast<long>(&a->mm_map), sizeof(a->mm_map)),
        "prctl(PR_SET_MM_MAP)", a->mm_map.start_brk);
  Sys(kClose, a->mm_map.exe_fd);
}

// A POSIX timer that expired since the helper armed it (RestorePosixTimers,
// which blocks its signal) has its signal queued. An older kernel (6.1 here;
// the later rework of posix-timer signals keeps an ignored timer's signal)
// re-arms a periodic timer only when that signal is dequeued (posixtimer_rearm,
// from dequeue_signal): ignored below, it would be discarded unseen and the
// timer never fire again (seen on 6.1: a restore slow enough for a 100 ms
// timer to expire before the handlers were in place), and a one-shot expiry
// would be lost. So every pending signal is taken here with rt_sigtimedwait
// (which re-arms), the timers' kept (up to kMaxExpired) to be queued again
// after the image's pending signals; the rest is what the helper received.
constexpr uint32_t kMaxExpired = 16;
struct Expired {
  uint64_t info[16];  // siginfo_t, 128 bytes
};

uint32_t TakePendingSignals(Expired* kept) {
  const uint64_t all = ~((1ull << (9 - 1)) | (1ull << (19 - 1)));  // but SIGKILL, SIGSTOP
  const struct {
    int64_t sec, nsec;
  } zero = {0, 0};
  uint32_t n = 0;
  Expired info;
  // Bounded: a timer re-armed here expires again no sooner than its interval.
  for (int i = 0; i < 1024; ++i) {
    if (Sys(kRtSigtimedwait, reinterpret_cast<long>(&all), reinterpret_cast<long>(&info), reinterpret_cast<long>(&zero), 8) <= 0)
      break;
    const int32_t code = static_cast<int32_t>(info.info[1]);  // si_code, after si_signo and si_errno
    if (code == -2 /*SI_TIMER*/ && n < kMaxExpired) kept[n++] = info;
  }
  return n;
}

void RestoreSignals(const Args* a) {
  Expired expired[kMaxExpired];
  const uint32_t n_expired = TakePendingSignals(expired);
  // Ignoring a signal discards it from every pending queue (signal(7)): what
  // the helper received (SIGCHLD of its ghosts and zombies) goes, and only the
  // image's pending signals are queued below.
  const KSigaction ign = {1 /*SIG_IGN*/, 0, 0, 0};
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != 9 && sig != 19) CHECK(a, Sys(kRtSigaction, sig, reinterpret_cast<long>(&ign), 0, 8), "rt_sigaction", sig);
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == 9 || sig == 19) continue;
    KSigaction dfl = {0, 0, 0, 0};
    const KSigaction* act = a->has_action[sig] ? &a->actions[sig] : &dfl;
    CHECK(a, Sys(kRtSigaction, sig, reinterpret_cast<long>(act), 0, 8), "rt_sigaction", sig);
  }
  struct {
    uint64_t sp;
    int32_t flags;
    uint64_t size;
  } ss = {a->altstack_sp, static_cast<int32_t>(a->altstack_flags & (1u << 31) /*SS_AUTODISARM*/), a->altstack_size};
  if (!(a->altstack_flags & 2)) CHECK(a, Sys(kSigaltstack, reinterpret_cast<long>(&ss), 0), "sigaltstack", a->altstack_sp);
  for (int which = 0; which < 3; ++which) {
    const ITimerArg& t = a->itimers[which];
    if (!t.set) continue;
    struct {
      int64_t isec, iusec, vsec, vusec;
    } it = {static_cast<int64_t>(t.interval_us / 1000000), static_cast<int64_t>(t.interval_us % 1000000),
            static_cast<int64_t>(t.value_us / 1000000), static_cast<int64_t>(t.value_us % 1000000)};
    CHECK(a, Sys(kSetitimer, which, reinterpret_cast<long>(&it), 0), "setitimer", which);
  }
  const uint8_t* info = reinterpret_cast<const uint8_t*>(a) + a->pending_off;
  for (uint32_t i = 0; i < a->n_pending_private + a->n_pending_shared; ++i, info += 128) {
    const int32_t signo = *reinterpret_cast<const int32_t*>(info);
    if (i < a->n_pending_private)
      CHECK(a, Sys(kRtTgsigqueueinfo, a->pid, a->pid, signo, reinterpret_cast<long>(info)), "rt_tgsigqueueinfo", signo);
    else
      CHECK(a, Sys(kRtSigqueueinfo, a->pid, signo, reinterpret_cast<long>(info)), "rt_sigqueueinfo", signo);
  }
  // The expiries since the helper armed the timers, as process-directed
  // signals (like the image's pending timer signals: no longer tied to the
  // timer, posix_timers.h); still blocked until the image's mask is set.
  for (uint32_t i = 0; i < n_expired; ++i) {
    const int32_t signo = static_cast<int32_t>(expired[i].info[0]);
    CHECK(a, Sys(kRtSigqueueinfo, a->pid, signo, reinterpret_cast<long>(&expired[i])), "rt_sigqueueinfo", signo);
  }
}

void RestoreThreadState(const Args* a) {
  if (a->robust_list)
    CHECK(a, Sys(kSetRobustList, a->robust_list, a->robust_list_len), "set_robust_list", a->robust_list);
  Sys(kSetTidAddress, a->clear_child_tid);
  if (a->rseq_addr) CHECK(a, Sys(kRseq, a->rseq_addr, a->rseq_len, 0, a->rseq_sig), "rseq registration", a->rseq_addr);
}

// After the credentials, which reset it (prctl(2)). The helper ran with
// SIGKILL, to die with a failed cryo; cryo's PTRACE_O_EXITKILL covers the rest.
void RestorePdeathSignal(const Args* a) {
  constexpr long kPrSetPdeathsig = 1;
  CHECK(a, Sys(kPrctl, kPrSetPdeathsig, a->pdeath_sig), "PR_SET_PDEATHSIG", a->pdeath_sig);
}

// Credentials, in an order the kernel's side effects allow (each thread its
// own: they are per task):
//  - the uid/gid switch runs under SECBIT_NO_SETUID_FIXUP, so the kernel does
//    not touch the capability sets meanwhile (capabilities(7), "Effect of
//    user ID changes on capabilities") and CAP_SETPCAP stays for the rest;
//  - the inheritable set comes before the ambient raises (ambient needs each
//    capability permitted and inheritable) and before the bounding-set drops
//    (capset only adds inheritable capabilities that are in the bounding set);
//  - the image's securebits (locks included) come after the ambient raises
//    (SECBIT_NO_CAP_AMBIENT_RAISE) and before the final capset, which may drop
//    CAP_SETPCAP.
// A uid or gid change resets the parent-death signal and the dumpable flag
// (commit_creds): both are set after this, not before.
void RestoreCreds(const Args* a) {
  const CredsArg& c = a->creds;
  constexpr long kPrCapbsetDrop = 24, kPrSetSecurebits = 28, kPrCapAmbient = 47, kPrCapAmbientRaise = 2,
                 kPrCapAmbientClearAll = 4, kPrSetNoNewPrivs = 38, kSecbitNoSetuidFixup = 1 << 2;
  struct {
    uint32_t version;
    int32_t pid;
  } hdr = {0x20080522 /*_LINUX_CAPABILITY_VERSION_3*/, 0};
  struct CapData {
    uint32_t eff, prm, inh;
  } now[2] = {}, data[2];
  CHECK(a, Sys(kCapget, reinterpret_cast<long>(&hdr), reinterpret_cast<long>(now)), "capget", 0);
  if (c.ngroups != kKeepGroups)
    CHECK(a, Sys(kSetgroups, c.ngroups, reinterpret_cast<long>(c.groups)), "setgroups", c.ngroups);
  CHECK(a, Sys(kPrctl, kPrSetSecurebits, kSecbitNoSetuidFixup), "PR_SET_SECUREBITS", kSecbitNoSetuidFixup);
  CHECK(a, Sys(kSetresgid, c.gid[0], c.gid[1], c.gid[2]), "setresgid", c.gid[1]);
  Sys(kSetfsgid, c.gid[3]);
  CHECK(a, Sys(kSetresuid, c.uid[0], c.uid[1], c.uid[2]), "setresuid", c.uid[1]);
  Sys(kSetfsuid, c.uid[3]);
  for (int i = 0; i < 2; ++i) data[i] = {now[i].eff, now[i].prm, static_cast<uint32_t>(c.cap_inh >> (32 * i))};
  CHECK(a, Sys(kCapset, reinterpret_cast<long>(&hdr), reinterpret_cast<long>(data)), "capset (inheritable)", c.cap_inh);
  Sys(kPrctl, kPrCapAmbient, kPrCapAmbientClearAll, 0, 0, 0);
  for (uint32_t cap = 0; cap <= c.last_cap && cap < 64; ++cap)
    if (c.cap_amb & (1ull << cap)) CHECK(a, Sys(kPrctl, kPrCapAmbient, kPrCapAmbientRaise, cap, 0, 0), "PR_CAP_AMBIENT_RAISE", cap);
  for (uint32_t cap = 0; cap <= c.last_cap && cap < 64; ++cap)
    if (!(c.cap_bnd & (1ull << cap))) CHECK(a, Sys(kPrctl, kPrCapbsetDrop, cap), "PR_CAPBSET_DROP", cap);
  CHECK(a, Sys(kPrctl, kPrSetSecurebits, c.securebits), "PR_SET_SECUREBITS", c.securebits);
  for (int i = 0; i < 2; ++i)
    data[i] = {static_cast<uint32_t>(c.cap_eff >> (32 * i)), static_cast<uint32_t>(c.cap_prm >> (32 * i)),
               static_cast<uint32_t>(c.cap_inh >> (32 * i))};
  CHECK(a, Sys(kCapset, reinterpret_cast<long>(&hdr), reinterpret_cast<long>(data)), "capset", c.cap_eff);
  if (c.no_new_privs) CHECK(a, Sys(kPrctl, kPrSetNoNewPrivs, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS", 1);
}

// Makes the dumpable flag fs.suid_dumpable, which is what the original's 2
// (SUID_DUMP_ROOT) came from: prctl(PR_SET_DUMPABLE) takes only 0 and 1, but
// a change of the effective uid sets it (commit_creds). Before the
// credentials are restored (it needs CAP_SETUID); they keep it.
void DumpableFromSysctl(const Args* a) {
  CHECK(a, Sys(kSetresuid, -1, 1, -1), "setresuid (dumpable)", 1);
  CHECK(a, Sys(kSetresuid, -1, 0, -1), "setresuid (dumpable)", 0);
}

// Seccomp filters, then strict mode. cryo traces every restored task with
// PTRACE_O_SUSPEND_SECCOMP, so nothing the blob or cryo calls afterwards is
// filtered; the filters apply from the release (PTRACE_DETACH) on. Before the
// credentials: installing a filter without no_new_privs takes CAP_SYS_ADMIN.
void InstallSeccomp(const Args* a, const ThreadSeccomp& s) {
  const auto* f = reinterpret_cast<const SeccompFilterArg*>(reinterpret_cast<const char*>(a) + s.filters_off);
  for (uint32_t i = 0; i < s.n_filters; ++i) {
    struct {
      uint16_t len;
      uint64_t filter;
    } prog = {static_cast<uint16_t>(f[i].n_insns), reinterpret_cast<uint64_t>(a) + f[i].prog_off};
    CHECK(a, Sys(kSeccomp, 1 /*SECCOMP_SET_MODE_FILTER*/, f[i].flags, reinterpret_cast<long>(&prog)), "seccomp filter",
          i);
  }
  if (s.strict) CHECK(a, Sys(kSeccomp, 0 /*SECCOMP_SET_MODE_STRICT*/, 0, 0), "seccomp strict mode", 0);
}

void RestoreAltstack(const Args* a, uint64_t sp, uint64_t size, int32_t flags) {
  if (flags & 2 /*SS_DISABLE*/) return;
  struct {
    uint64_t sp;
    int32_t flags;
    uint64_t size;
  } ss = {sp, static_cast<int32_t>(flags & (1u << 31) /*SS_AUTODISARM*/), size};
  CHECK(a, Sys(kSigaltstack, reinterpret_cast<long>(&ss), 0), "sigaltstack", sp);
}

}  // namespace

// clone3 for a thread: the child returns on its new stack and calls fn(arg).
// (rdi = clone_args, rsi = size, rdx = fn, rcx = arg; r8/r9 survive the syscall.)
extern "C" long cryo_clone3_thread(void* args, long size, void (*fn)(ThreadArg*), ThreadArg* arg);
asm(R"(
  .pushsection .text
  .type cryo_clone3_thread, @function
cryo_clone3_thread:
  mov %rdx, %r8
  mov %rcx, %r9
  mov $435, %eax
  syscall
  test %rax, %rax
  jnz 1f
  mov %r9, %rdi
  call *%r8
  hlt
1:
  ret
  .popsection
)");

namespace {

void CreateThread(Args* a, ThreadArg* t);

[[noreturn]] void ThreadMain(ThreadArg* t) {
  Args* a = t->args;
  ThreadArg* threads = reinterpret_cast<ThreadArg*>(reinterpret_cast<char*>(a) + a->threads_off);
  for (uint32_t i = t->create_first; i < t->create_last; ++i) {
    threads[i].create_first = threads[i].create_last = 0;
    CreateThread(a, &threads[i]);
  }
  if (t->robust_list) CHECK(a, Sys(kSetRobustList, t->robust_list, t->robust_list_len), "set_robust_list", t->tid);
  Sys(kSetTidAddress, t->clear_child_tid);
  if (t->rseq_addr) CHECK(a, Sys(kRseq, t->rseq_addr, t->rseq_len, 0, t->rseq_sig), "rseq registration", t->tid);
  RestoreAltstack(a, t->altstack_sp, t->altstack_size, t->altstack_flags);
  constexpr long kPrSetName = 15, kPrSetTimerslack = 29;
  Sys(kPrctl, kPrSetName, reinterpret_cast<long>(t->comm));
  if (t->timer_slack_ns) Sys(kPrctl, kPrSetTimerslack, static_cast<long>(t->timer_slack_ns));
  const uint8_t* info = reinterpret_cast<const uint8_t*>(a) + t->pending_off;
  for (uint32_t i = 0; i < t->n_pending; ++i, info += 128)
    CHECK(a, Sys(kRtTgsigqueueinfo, a->pid, t->tid, *reinterpret_cast<const int32_t*>(info), reinterpret_cast<long>(info)),
          "rt_tgsigqueueinfo", t->tid);
  InstallSeccomp(a, t->seccomp);
  if (a->restore_creds) RestoreCreds(a);
  for (;;) Sys(kTgkill, a->pid, t->tid, 19 /*SIGSTOP*/);
}

// Every clone stops the creator in a PTRACE_EVENT_CLONE until cryo continues
// it: the leader creates every kCreateFanout-th thread, and each of those the
// ones after it, so that up to kCreateFanout + 1 creators wait at once.
constexpr uint32_t kCreateFanout = 8;

void CreateThread(Args* a, ThreadArg* t) {
  t->args = a;
  int32_t tid = t->tid;
  uint64_t ca[11] = {};
  ca[0] = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000;  // VM FS FILES SIGHAND THREAD SYSVSEM
  ca[5] = t->stack;
  ca[6] = t->stack_size;
  ca[8] = reinterpret_cast<uint64_t>(&tid);
  ca[9] = 1;
  // A thread id just freed (a reaped helper thread) can stay busy briefly.
  for (int attempt = 0;; ++attempt) {
    long r = cryo_clone3_thread(ca, sizeof(ca), ThreadMain, t);
    if (r > 0) break;
    if (r != -17 /*EEXIST*/ || attempt > 2000) Fail(a, "clone3 of a thread", r, static_cast<uint64_t>(tid));
    struct {
      int64_t sec, nsec;
    } ts = {0, 1000000};
    Sys(kNanosleep, reinterpret_cast<long>(&ts), 0);
  }
}

void CreateThreads(Args* a) {
  ThreadArg* threads = reinterpret_cast<ThreadArg*>(reinterpret_cast<char*>(a) + a->threads_off);
  for (uint32_t i = 0; i < a->n_threads; i += kCreateFanout) {
    threads[i].create_first = i + 1;
    threads[i].create_last = i + kCreateFanout < a->n_threads ? i + kCreateFanout : a->n_threads;
    CreateThread(a, &threads[i]);
  }
}

}  // namespace

extern "C" {

// The compiler may emit calls to these for struct copies.
void* memcpy(void* d, const void* s, size_t n) {
  char* dp = static_cast<char*>(d);
  const char* sp = static_cast<const char*>(s);
  while (n--) *dp++ = *sp++;
  return d;
}
void* memset(void* d, int c, size_t n) {
  char* dp = static_cast<char*>(d);
  while (n--) *dp++ = static_cast<char>(c);
  return d;
}

[[noreturn]] __attribute__((section(".text.entry"), used)) void cryo_restorer_entry(Args* a) {
  UnmapAllBut(a);
  MoveSpecials(a);
  MoveVmas(a);
  if (a->n_lazy) RegisterLazy(a);
  RestoreMm(a);
  RestoreThreadState(a);
  RestoreSignals(a);
  // Threads are created while we still have CAP_CHECKPOINT_RESTORE (set_tid);
  // each then sets its own credentials (they are per thread in the kernel).
  // The filters every thread has, before the threads that inherit them.
  InstallSeccomp(a, a->seccomp_common);
  CreateThreads(a);
  InstallSeccomp(a, a->seccomp);
  if (a->dumpable == 2) DumpableFromSysctl(a);
  if (a->restore_creds) RestoreCreds(a);
  RestorePdeathSignal(a);
  // The dumpable flag is per address space, and every thread's credential
  // switch resets it: cryo sets it once all of them have stopped.
  // cryo, our ptracer, takes it from here: it closes status_fd, unmaps the
  // blob, loads every thread's registers and signal mask, and releases them.
  for (;;) Sys(kTgkill, a->pid, a->pid, 19 /*SIGSTOP*/);
}

}  // extern "C"
