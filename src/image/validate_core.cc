// core-PID.img: ProcessCore, TaskCore, Registers, SigAction, SigInfo, ITimer,
// Rlimit, Creds, MmFields, PosixTimer, TtyControl.
#include <sys/stat.h>
#include <cstring>
#include <set>

#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

// SA_* flags the kernel keeps (others are cleared by rt_sigaction, so they
// could not come back): NOCLDSTOP, NOCLDWAIT, SIGINFO, UNSUPPORTED,
// EXPOSE_TAGBITS, RESTORER, ONSTACK, RESTART, NODEFER, RESETHAND.
constexpr uint64_t kSaFlags = 0x1 | 0x2 | 0x4 | 0x400 | 0x800 | 0x04000000 | 0x08000000 | 0x10000000 |
                              0x40000000 | 0x80000000ull;
// EFLAGS bits ptrace lets a tracer set (arch/x86/kernel/ptrace.c FLAG_MASK):
// CF PF AF ZF SF TF DF OF RF AC. The others come from the kernel: a user
// task always has IF and the reserved bit 1, nothing else.
constexpr uint64_t kUserFlags = 0x50dd5;
constexpr uint64_t kFixedFlags = 0x202;
// user_regs_struct word indexes.
constexpr int kResourceLimits = 16;  // RLIM_NLIMITS
constexpr int kEflags = 18, kCs = 17, kSs = 20, kFsBase = 21, kGsBase = 22, kDs = 23;

bool ValidSignal(int64_t sig) { return sig >= 1 && sig <= 64; }

// A siginfo queue: 128-byte records of valid signals; a standard signal
// (below SIGRTMIN) is pending at most once (the kernel would drop a second).
std::string QueueProblem(const google::protobuf::RepeatedPtrField<SigInfo>& q) {
  std::set<int32_t> standard;
  for (const SigInfo& si : q) {
    if (si.raw().size() != 128) return "a pending siginfo of " + std::to_string(si.raw().size()) + " bytes, not 128";
    int32_t signo;
    std::memcpy(&signo, si.raw().data(), 4);
    if (!ValidSignal(signo)) return "a pending signal " + std::to_string(signo) + " out of range 1..64";
    if (signo < 32 && !standard.insert(signo).second)
      return "standard signal " + std::to_string(signo) + " pending twice (it cannot be queued twice)";
  }
  return "";
}

// struct user_regs_struct and the XSAVE area of one thread.
std::string RegistersProblem(const Inventory& inv, const Registers& r) {
  if (r.gpr_size() != 27) return "register set of " + std::to_string(r.gpr_size()) + " words, not 27";
  const uint64_t flags = r.gpr(kEflags);
  if ((flags & ~kUserFlags) != kFixedFlags) return "eflags " + Hex(flags) + " has bits no user task can have";
  if (r.gpr(kCs) != 0x33 || r.gpr(kSs) != 0x2b)
    return "code/stack segments " + Hex(r.gpr(kCs)) + "/" + Hex(r.gpr(kSs)) + " are not the 64-bit user ones";
  for (int i = kDs; i < 27; ++i)
    if (r.gpr(i) > 0xffff || (r.gpr(i) && (r.gpr(i) & 3) != 3)) return "segment selector " + Hex(r.gpr(i)) + " is invalid";
  if (r.gpr(kFsBase) >= kUserTop || r.gpr(kGsBase) >= kUserTop) return "fs/gs base outside user space";
  const std::string& x = r.xsave();
  if (x.size() != inv.xsave_size())
    return "xsave area of " + std::to_string(x.size()) + " bytes, the inventory says " + std::to_string(inv.xsave_size());
  uint64_t xcr0, bv, comp;
  uint32_t mxcsr;
  std::memcpy(&mxcsr, x.data() + 24, 4);
  std::memcpy(&xcr0, x.data() + 464, 8);
  std::memcpy(&bv, x.data() + 512, 8);
  std::memcpy(&comp, x.data() + 520, 8);
  if (xcr0 != inv.xsave_features())
    return "xsave area of a CPU with features " + Hex(xcr0) + ", the inventory says " + Hex(inv.xsave_features());
  // What PTRACE_SETREGSET refuses (validate_user_xstate_header, mxcsr mask).
  if (bv & ~xcr0) return "xsave state components " + Hex(bv) + " beyond the CPU's " + Hex(xcr0);
  if (comp) return "xsave area in the compacted format";
  for (size_t i = 528; i < 576; ++i)
    if (x[i]) return "xsave header with reserved bytes set";
  if (mxcsr & 0xffff0000u) return "MXCSR " + Hex(mxcsr) + " with reserved bits set";
  return "";
}

std::string AltstackProblem(uint64_t sp, uint64_t size, int32_t flags) {
  constexpr uint32_t kOnStack = 1, kDisable = 2, kAutoDisarm = 1u << 31;
  const uint32_t f = static_cast<uint32_t>(flags);
  if (f & ~(kOnStack | kDisable | kAutoDisarm)) return "sigaltstack flags " + Hex(f) + " unknown";
  if (f & kDisable) return sp || size || (f & kOnStack) ? "a disabled sigaltstack with an address, size or in use" : "";
  if (size < 2048 || sp >= kUserTop || size > kUserTop - sp) return "sigaltstack " + Hex(sp) + "+" + Hex(size) + " invalid";
  return "";
}

std::string ThreadAttrsProblem(const TaskCore& t);

std::string TaskProblem(const Inventory& inv, const TaskCore& t) {
  if (std::string p = RegistersProblem(inv, t.regs()); !p.empty()) return p;
  if (std::string p = ThreadAttrsProblem(t); !p.empty()) return p;
  if (t.blocked() & kSigKillStopMask) return "SIGKILL or SIGSTOP blocked (the kernel never does that)";
  if (std::string p = QueueProblem(t.pending()); !p.empty()) return p;
  if (std::string p = AltstackProblem(t.altstack_sp(), t.altstack_size(), t.altstack_flags()); !p.empty()) return p;
  if (t.rseq_addr() ? (t.rseq_addr() % 32 || t.rseq_addr() >= kUserTop || t.rseq_len() < 32 || t.rseq_len() > 4096)
                    : (t.rseq_len() || t.rseq_sig()))
    return "rseq area " + Hex(t.rseq_addr()) + " of " + std::to_string(t.rseq_len()) + " bytes is invalid";
  if (t.robust_list() >= kUserTop || (t.robust_list_len() != 24 && (t.robust_list() || t.robust_list_len())))
    return "robust list " + Hex(t.robust_list()) + " of " + std::to_string(t.robust_list_len()) + " bytes is invalid";
  if (t.clear_child_tid() >= kUserTop) return "clear_child_tid " + Hex(t.clear_child_tid()) + " outside user space";
  if (t.comm().size() > 15 || t.comm().find('\0') != std::string::npos) return "thread name longer than 15 bytes or with a NUL";
  const uint32_t policy = t.sched_policy() & ~0x40000000u;  // SCHED_RESET_ON_FORK
  // SCHED_DEADLINE (6) only with its sched_attr (restored with sched_setattr).
  const bool deadline = policy == 6 && t.has_sched_attr() && t.sched_attr().policy() == 6;
  if (t.sched_policy() & ~0x40000007u || policy == 4 || (policy == 6 && !deadline) || policy == 7)
    return "scheduling policy " + Hex(t.sched_policy()) + " unknown or not restorable";
  const bool rt = policy == 1 || policy == 2;
  if (rt ? (t.sched_priority() < 1 || t.sched_priority() > 99) : t.sched_priority() != 0)
    return "scheduling priority " + std::to_string(t.sched_priority()) + " invalid for policy " + std::to_string(policy);
  if (t.nice() < -20 || t.nice() > 19) return "nice value " + std::to_string(t.nice()) + " out of range -20..19";
  // Timer slack: 0 only for a real-time task (PR_SET_TIMERSLACK 0 means "the
  // default"); below 2^63 - 4096, or PR_GET_TIMERSLACK's result reads as an error.
  if ((t.timer_slack_ns() == 0 && !rt && !deadline) || t.timer_slack_ns() >= (1ull << 63) - 4096)
    return "timer slack " + std::to_string(t.timer_slack_ns()) + " ns no task of this policy keeps";
  return "";
}

// struct sched_attr as sched_getattr(2) reports it and sched_setattr takes it
// back (kernel/sched/syscalls.c __sched_setscheduler, __checkparam_dl).
std::string SchedAttrProblem(const SchedAttr& a) {
  constexpr uint32_t kDeadline = 6;
  constexpr uint64_t kFlags = 0x1 | 0x2 | 0x4;  // RESET_ON_FORK, RECLAIM, DL_OVERRUN
  if (a.policy() > kDeadline || a.policy() == 4) return "sched_attr policy " + std::to_string(a.policy()) + " unknown";
  if (a.flags() & ~kFlags) return "sched_attr flags " + Hex(a.flags()) + " unknown";
  if (a.nice() < -20 || a.nice() > 19) return "sched_attr nice " + std::to_string(a.nice()) + " out of range -20..19";
  const bool rt = a.policy() == 1 || a.policy() == 2;
  if (rt ? (a.priority() < 1 || a.priority() > 99) : a.priority() != 0)
    return "sched_attr priority " + std::to_string(a.priority()) + " invalid for policy " + std::to_string(a.policy());
  if (a.policy() == kDeadline) {
    // runtime at least 1024 ns, runtime <= deadline <= period (0: the
    // deadline), deadline below 2^63.
    const uint64_t period = a.period() ? a.period() : a.deadline();
    if (a.runtime() < 1024 || a.runtime() > a.deadline() || a.deadline() > period || a.deadline() >> 63)
      return "SCHED_DEADLINE runtime/deadline/period " + std::to_string(a.runtime()) + "/" +
             std::to_string(a.deadline()) + "/" + std::to_string(a.period()) + " the kernel refuses";
  } else if (a.deadline() || a.period()) {
    // Only SCHED_DEADLINE has them (runtime: a fair task's slice, 6.12+).
    return "deadline or period on policy " + std::to_string(a.policy());
  } else if (rt ? a.runtime() != 0 : (a.runtime() && (a.runtime() < 100000 || a.runtime() > 100000000))) {
    // A fair task's slice is clamped to 0.1..100 ms (__setscheduler_params),
    // 0 the default; sched_getattr shows none for a real-time one (get_params).
    return "time slice " + std::to_string(a.runtime()) + " ns the kernel would not keep for policy " +
           std::to_string(a.policy());
  }
  if (a.has_util_min() != a.has_util_max() || a.util_max() > 1024 || a.util_min() > a.util_max())
    return "utilization clamps " + std::to_string(a.util_min()) + ".." + std::to_string(a.util_max()) + " invalid";
  return "";
}

// The per-thread attributes of tree/proc_attrs.h.
std::string ThreadAttrsProblem(const TaskCore& t) {
  // A cpu_set_t (unsigned longs) of at most 8192 CPUs (CONFIG_NR_CPUS), one
  // CPU at least (sched_setaffinity refuses an empty mask).
  const std::string& m = t.cpu_affinity();
  if (m.size() % 8 || m.size() > 1024 || (!m.empty() && m.find_first_not_of('\0') == std::string::npos))
    return "CPU affinity mask of " + std::to_string(m.size()) + " bytes invalid or empty";
  // IOPRIO_PRIO_VALUE(class, data): class 0..3.
  // data: hint << 3 | level, hints 0..7 (IOPRIO_HINT_DEV_DURATION_LIMIT_*).
  if (t.has_ioprio() && ((t.ioprio() >> 13) > 3 || ((t.ioprio() & 0x1fff) >> 3) > 7))
    return "I/O priority " + Hex(t.ioprio()) + " invalid";
  if (!t.has_sched_attr()) return "";
  if (std::string p = SchedAttrProblem(t.sched_attr()); !p.empty()) return p;
  // The same settings as sched_getscheduler, sched_getparam and getpriority
  // showed: read at once from the same task, they agree (sched_getattr shows
  // nice 0 for a real-time or deadline task). The restore sets both.
  const SchedAttr& a = t.sched_attr();
  const uint32_t policy = t.sched_policy() & ~0x40000000u;
  const bool reset = t.sched_policy() & 0x40000000u;
  const bool fair = policy == 0 || policy == 3 || policy == 5;
  if (a.policy() != policy || ((a.flags() & 1) != 0) != reset || a.priority() != t.sched_priority() ||
      (fair && a.nice() != t.nice()) || (!fair && a.nice() != 0))
    return "sched_attr (policy " + std::to_string(a.policy()) + ", priority " + std::to_string(a.priority()) +
           ", nice " + std::to_string(a.nice()) + ") disagrees with the thread's policy " + Hex(t.sched_policy()) +
           ", priority " + std::to_string(t.sched_priority()) + ", nice " + std::to_string(t.nice());
  return "";
}

// MmAttributes: the values prctl, mlockall and membarrier report (mem/mm_attrs.h).
std::string MmAttributesProblem(const MmAttributes& a) {
  if (a.thp_disable() != 0 && a.thp_disable() != 1 && a.thp_disable() != 3)
    return "THP disable " + std::to_string(a.thp_disable()) + " not 0, 1 or 1|EXCEPT_ADVISED";
  if (a.mlock_future() != 0 && a.mlock_future() != 2 && a.mlock_future() != 6)
    return "mlockall flags " + std::to_string(a.mlock_future()) + " not 0, MCL_FUTURE or MCL_FUTURE|MCL_ONFAULT";
  // MEMBARRIER_CMD_REGISTER_{GLOBAL_EXPEDITED, PRIVATE_EXPEDITED,
  // PRIVATE_EXPEDITED_SYNC_CORE, PRIVATE_EXPEDITED_RSEQ}.
  if (a.membarrier() & ~(4u | 16u | 64u | 256u)) return "membarrier registrations " + Hex(a.membarrier()) + " unknown";
  return "";
}

std::string CredsProblem(const Creds& c) {
  if (c.uid_size() != 4 || c.gid_size() != 4) return "credentials without exactly 4 uids and 4 gids";
  if (c.groups_size() > 64) return std::to_string(c.groups_size()) + " supplementary groups (at most 64)";
  for (const auto* ids : {&c.uid(), &c.gid(), &c.groups()})
    for (uint32_t id : *ids)
      if (id == UINT32_MAX) return "uid or gid -1 (it means \"unchanged\" to the kernel)";
  if (c.cap_eff() & ~c.cap_prm()) return "effective capabilities outside the permitted set";
  if (c.cap_amb() & ~(c.cap_prm() & c.cap_inh())) return "ambient capabilities outside permitted and inheritable";
  if (c.securebits() & ~0xfffu) return "securebits " + Hex(c.securebits()) + " unknown";
  return "";
}

std::string MmFieldsProblem(const MmFields& m) {
  for (uint64_t a : {m.start_code(), m.end_code(), m.start_data(), m.end_data(), m.start_brk(), m.brk(),
                     m.start_stack(), m.arg_start(), m.arg_end(), m.env_start(), m.env_end()})
    if (a >= kUserTop) return "mm address " + Hex(a) + " outside user space";
  if (m.start_code() > m.end_code() || m.start_data() > m.end_data() || m.start_brk() > m.brk() ||
      m.arg_start() > m.arg_end() || m.env_start() > m.env_end())
    return "mm ranges (code, data, brk, arguments, environment) end before they start";
  if (m.auxv_size() > 128 || m.auxv_size() % 2 || (m.auxv_size() && m.auxv(m.auxv_size() - 2) != 0))
    return "auxv of " + std::to_string(m.auxv_size()) + " words is not (type, value) pairs ending with AT_NULL";
  if (std::string p = PathProblem(m.exe_path()); !p.empty()) return "executable path " + p;
  return "";
}

// cwd_file, root_file, exe_file: the files the restore checks have not
// changed (files/changed_files.h), named as cwd, root and exe_path are.
std::string RecordedFilesProblem(const ProcessCore& c) {
  if (c.has_cwd_file()) {
    if (c.cwd_unlinked()) return "a recorded working directory beside a deleted one";
    if (c.cwd_file().path() != c.cwd() || !S_ISDIR(c.cwd_file().mode()) || c.cwd_file().has_content_xxh3())
      return "recorded working directory is not its cwd, not a directory, or has a content hash";
  }
  if (c.has_root_file() &&
      (c.root_file().path() != c.root() || !S_ISDIR(c.root_file().mode()) || c.root_file().has_content_xxh3()))
    return "recorded root directory is not its root, not a directory, or has a content hash";
  if (c.has_exe_file()) {
    if (c.exe_unlinked()) return "a recorded executable beside a deleted one";
    if (c.exe_file().path() != c.mm().exe_path() || !S_ISREG(c.exe_file().mode()))
      return "recorded executable is not its exe_path or not a regular file";
  }
  return "";
}

std::string TimerProblem(int pid, const ProcessCore& core, const PosixTimer& t) {
  const int32_t clock = t.clockid();
  // CLOCK_REALTIME 0, MONOTONIC 1, the coarse, boot and alarm clocks 5..9,
  // TAI 11. CLOCK_PROCESS/THREAD_CPUTIME_ID (2, 3) are kept as the CPU clock
  // they name (negative: ~pid << 3 | perthread << 2 | type, type < 3, pid 0 =
  // the caller), which is what /proc shows.
  if (clock == 2 || clock == 3 || clock == 4 || clock == 10 || clock > 11)
    return "clock " + std::to_string(clock) + " is not one a timer keeps";
  if (clock < 0) {
    const int64_t owner = ~(static_cast<int64_t>(clock) >> 3);
    bool ours = owner == 0 || owner == pid;
    for (const TaskCore& th : core.threads()) ours |= owner == th.tid();
    if ((clock & 3) == 3 || !ours) return "CPU clock " + std::to_string(clock) + " of a task outside the process";
  }
  constexpr int32_t kSignal = 0, kNone = 1, kThreadId = 4;
  if (t.sigev_notify() != kSignal && t.sigev_notify() != kNone && t.sigev_notify() != (kSignal | kThreadId))
    return "notification " + std::to_string(t.sigev_notify()) + " unknown";
  if (t.sigev_notify() != kNone && !ValidSignal(t.sigev_signo()))
    return "signal " + std::to_string(t.sigev_signo()) + " out of range 1..64";
  if ((t.sigev_notify() & kThreadId) ? t.notify_tid() != pid : t.notify_tid() != 0)
    return "target thread " + std::to_string(t.notify_tid()) + " is not the thread group leader";
  if (t.interval_ns() > kKtimeMaxNs || t.value_ns() > kKtimeMaxNs) return "times beyond KTIME_MAX";
  if (t.overrun() < 0) return "negative overrun count";
  return "";
}

// wait(2) status of a zombie: exited with a code, or killed by a signal that
// terminates by default (a zombie is rebuilt by dying the same way).
std::string ExitStatusProblem(int32_t st) {
  if (st < 0 || st > 0xffff) return "wait status " + Hex(static_cast<uint32_t>(st)) + " invalid";
  if ((st & 0x7f) == 0) return st & 0xff ? "wait status " + Hex(static_cast<uint32_t>(st)) + " invalid" : "";
  const int sig = st & 0x7f;
  // SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH do not kill.
  if (st & 0xff00 || sig > 64 || sig == 17 || sig == 18 || (sig >= 19 && sig <= 23) || sig == 28)
    return "wait status " + Hex(static_cast<uint32_t>(st)) + " is no way a process dies";
  return "";
}

Status ValidateZombie(const LoadedImage& img, const std::string& file, const ProcessCore& c) {
  ProcessCore rest = c;
  for (int field : {ProcessCore::kPidFieldNumber, ProcessCore::kPpidFieldNumber, ProcessCore::kPgidFieldNumber,
                    ProcessCore::kSidFieldNumber, ProcessCore::kExitSignalFieldNumber, ProcessCore::kZombieFieldNumber,
                    ProcessCore::kExitStatusFieldNumber, ProcessCore::kZombieCommFieldNumber})
    rest.GetReflection()->ClearField(&rest, rest.GetDescriptor()->FindFieldByNumber(field));
  if (rest.ByteSizeLong())
    return Bad(img, file, "a zombie with more than pid, parent, group, session, exit signal, status and name");
  if (std::string p = ExitStatusProblem(c.exit_status()); !p.empty()) return Bad(img, file, p);
  if (c.zombie_comm().size() > 15 || c.zombie_comm().find('\0') != std::string::npos)
    return Bad(img, file, "zombie name longer than 15 bytes or with a NUL");
  return Status::Ok();
}

// Seccomp (tree/seccomp.h): a mode the kernel has, a chain only in filter
// mode and of at most MAX_INSNS_PER_PATH instructions in all (kernel/
// seccomp.c), indices of recorded filters, programs of whole instructions.
std::string SeccompProblem(const ProcessCore& c) {
  for (const SeccompFilter& f : c.seccomp_filters())
    if (f.program().empty() || f.program().size() % 8 != 0 || f.program().size() / 8 > 4096)
      return "a seccomp filter that is not a classic BPF program of 1 to 4096 instructions";
  for (const TaskCore& t : c.threads()) {
    const std::string who = "thread " + std::to_string(t.tid()) + ": ";
    if (t.seccomp_mode() > 2) return who + "seccomp mode " + std::to_string(t.seccomp_mode()) + " unknown";
    if ((t.seccomp_mode() == 2) != (t.seccomp_chain_size() > 0))
      return who + "a seccomp filter chain only in filter mode, and always there";
    uint64_t insns = 0;
    for (uint32_t id : t.seccomp_chain()) {
      if (id >= static_cast<uint32_t>(c.seccomp_filters_size()))
        return who + "seccomp filter " + std::to_string(id) + " is not recorded";
      insns += c.seccomp_filters(static_cast<int>(id)).program().size() / 8 + 4;
    }
    if (insns > 32768) return who + "seccomp filters of more than 32768 instructions in all";
  }
  return "";
}

}  // namespace

// A cgroup path relative to cryo's (the restore joins it to a directory): no
// NUL, not absolute, no empty or "." component, shorter than PATH_MAX.
std::string CgroupProblem(const CgroupPath& c) {
  const std::string& p = c.path();
  const std::string slashed = "/" + p + "/";
  if (p.size() >= kPathMax || p.find('\0') != std::string::npos ||
      (!p.empty() && (p[0] == '/' || slashed.find("//") != std::string::npos || slashed.find("/./") != std::string::npos)))
    return "cgroup path \"" + Printable(p) + "\" invalid";
  const std::string& h = c.hierarchy();
  if (h.size() > 255 || h.find_first_of(std::string(":/\n\0", 4)) != std::string::npos)
    return "cgroup hierarchy \"" + Printable(h) + "\" invalid";
  return "";
}

Status ValidateCore(const LoadedImage& img, const Index& index, int pid, const ProcessCore& c) {
  const std::string file = CoreName(pid);
  if (c.exit_signal() < 0 || c.exit_signal() > 64)
    return Bad(img, file, "exit signal " + std::to_string(c.exit_signal()) + " out of range 0..64");
  if (c.zombie()) return ValidateZombie(img, file, c);
  if (c.threads_size() < 1) return Bad(img, file, "no thread");
  if (c.threads(0).tid() != pid) return Bad(img, file, "the first thread is not the leader " + std::to_string(pid));
  if (c.exit_status() || !c.zombie_comm().empty()) return Bad(img, file, "a live process with an exit status");
  for (const TaskCore& t : c.threads()) {
    if (t.tid() < 1 || t.tid() > kPidMax) return Bad(img, file, "thread id " + std::to_string(t.tid()) + " out of range");
    if (std::string p = TaskProblem(img.inventory, t); !p.empty())
      return Bad(img, file, "thread " + std::to_string(t.tid()) + ": " + p);
  }
  if (std::string p = SeccompProblem(c); !p.empty()) return Bad(img, file, p);
  uint32_t prev_sig = 0;
  for (const SigAction& a : c.actions()) {
    const std::string what = "action of signal " + std::to_string(a.sig());
    if (!ValidSignal(a.sig()) || a.sig() == 9 || a.sig() == 19 || a.sig() <= prev_sig)
      return Bad(img, file, what + ": no such signal, SIGKILL/SIGSTOP, or not in ascending order");
    prev_sig = a.sig();
    if (a.flags() & ~kSaFlags) return Bad(img, file, what + ": flags " + Hex(a.flags()) + " unknown to the kernel");
    if (a.mask() & kSigKillStopMask) return Bad(img, file, what + ": mask holds SIGKILL or SIGSTOP");
    if ((a.handler() > 1 && a.handler() >= kUserTop) || a.restorer() >= kUserTop)
      return Bad(img, file, what + ": handler or restorer outside user space");
  }
  if (std::string p = QueueProblem(c.shared_pending()); !p.empty()) return Bad(img, file, "shared queue: " + p);
  int64_t prev_which = -1;
  for (const ITimer& it : c.itimers()) {
    if (it.which() > 2 || static_cast<int64_t>(it.which()) <= prev_which || it.interval_us() > kKtimeMaxNs / 1000 ||
        it.value_us() > kKtimeMaxNs / 1000)
      return Bad(img, file, "interval timer " + std::to_string(it.which()) + ": unknown, out of order, or beyond KTIME_MAX");
    prev_which = it.which();
  }
  // Every limit, in resource order (/proc/PID/limits): a limit left out would
  // come back as cryo's.
  if (c.rlimits_size() != kResourceLimits)
    return Bad(img, file, std::to_string(c.rlimits_size()) + " resource limits, not " + std::to_string(kResourceLimits));
  for (int i = 0; i < c.rlimits_size(); ++i) {
    const Rlimit& r = c.rlimits(i);
    if (r.resource() != static_cast<uint32_t>(i) || r.soft() > r.hard())
      return Bad(img, file, "resource limit " + std::to_string(r.resource()) + ": out of order, or soft above hard");
    // setrlimit(2) makes an RLIMIT_CPU soft limit of 0 one second.
    if (i == 0 && r.soft() == 0) return Bad(img, file, "RLIMIT_CPU soft limit 0 (the kernel keeps 1)");
  }
  if (std::string p = CredsProblem(c.creds()); !p.empty()) return Bad(img, file, p);
  if (c.umask() > 0777) return Bad(img, file, "umask " + Hex(c.umask()) + " has bits beyond 0777");
  if (c.personality() == UINT32_MAX) return Bad(img, file, "personality 0xffffffff (a query, not a value)");
  // /proc/PID/coredump_filter keeps the 9 bits it knows (MMF_DUMP_FILTER_BITS).
  if (c.has_coredump_filter() && (c.coredump_filter() & ~0x1ffu))
    return Bad(img, file, "coredump_filter " + Hex(c.coredump_filter()) + " has bits the kernel does not keep");
  if (std::string p = PathProblem(c.cwd()); !p.empty()) return Bad(img, file, "working directory " + p);
  if (std::string p = PathProblem(c.root()); !p.empty()) return Bad(img, file, "root directory " + p);
  if (std::string p = RecordedFilesProblem(c); !p.empty()) return Bad(img, file, p);
  if (c.pdeath_sig() < 0 || c.pdeath_sig() > 64)
    return Bad(img, file, "parent-death signal " + std::to_string(c.pdeath_sig()) + " out of range");
  if (c.dumpable() < 0 || c.dumpable() > 2) return Bad(img, file, "dumpable " + std::to_string(c.dumpable()) + " out of range");
  if (!c.has_mm()) return Bad(img, file, "no mm fields");
  if (std::string p = MmFieldsProblem(c.mm()); !p.empty()) return Bad(img, file, p);
  if (c.mm().has_attrs()) {
    if (!index.has("mm-attributes")) return Bad(img, file, "address space settings without feature 'mm-attributes'");
    if (std::string p = MmAttributesProblem(c.mm().attrs()); !p.empty()) return Bad(img, file, p);
  }
  // Job control: SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU (19..22).
  if (c.stop_signal() && (c.stop_signal() < 19 || c.stop_signal() > 22))
    return Bad(img, file, "stop signal " + std::to_string(c.stop_signal()) + " is no stop signal");
  if (c.has_oom_score_adj() && (c.oom_score_adj() < -1000 || c.oom_score_adj() > 1000))
    return Bad(img, file, "oom_score_adj " + std::to_string(c.oom_score_adj()) + " out of range -1000..1000");
  if (c.has_autogroup_nice() && (c.autogroup_nice() < -20 || c.autogroup_nice() > 19))
    return Bad(img, file, "autogroup nice " + std::to_string(c.autogroup_nice()) + " out of range -20..19");
  // An audit session comes with its loginuid (both read together).
  if (c.has_loginuid() != c.has_sessionid()) return Bad(img, file, "a loginuid without a session id, or the reverse");
  std::set<std::string> hierarchies;
  for (const CgroupPath& cg : c.cgroups()) {
    if (std::string p = CgroupProblem(cg); !p.empty()) return Bad(img, file, p);
    if (!hierarchies.insert(cg.hierarchy()).second)
      return Bad(img, file, "cgroup hierarchy \"" + Printable(cg.hierarchy()) + "\" listed twice");
  }
  int prev_id = -1;
  for (const PosixTimer& t : c.posix_timers()) {
    if (t.id() <= prev_id) return Bad(img, file, "POSIX timer ids not ascending and unique (" + std::to_string(t.id()) + ")");
    prev_id = t.id();
    if (std::string p = TimerProblem(pid, c, t); !p.empty())
      return Bad(img, file, "POSIX timer " + std::to_string(t.id()) + ": " + p);
  }
  // The members of a session whose terminal is a pty of the image all have it.
  for (const auto& [id, t] : index.ttys)
    if (t->kind() == TTY_PTY && t->session() && t->session() == c.sid() &&
        (!c.has_ctty() || c.ctty().tty_id() != id))
      return Bad(img, file, "its session " + std::to_string(c.sid()) + " has terminal " + std::to_string(id) +
                                ", it does not");
  if (c.has_ctty()) {
    const TtyControl& ct = c.ctty();
    if (!ct.rdev()) return Bad(img, file, "a controlling terminal with device number 0");
    if (ct.foreground_pgrp() < 0) return Bad(img, file, "negative foreground group of its terminal");
    if (ct.tty_id()) {
      auto t = index.ttys.find(ct.tty_id());
      if (t == index.ttys.end()) return Bad(img, file, "controlling terminal " + std::to_string(ct.tty_id()) + " is not in ttys.img");
      if (t->second->kind() == TTY_OUTSIDE)  // dump --ext-tty takes only terminals no process controls
        return Bad(img, file, "controlling terminal " + std::to_string(ct.tty_id()) + " is a terminal outside the tree");
      if (t->second->kind() == TTY_PTY && t->second->session() != c.sid())
        return Bad(img, file, "controlling terminal " + std::to_string(ct.tty_id()) + " belongs to session " +
                                  std::to_string(t->second->session()) + ", not to its session " + std::to_string(c.sid()));
      // What the process sees as its terminal's foreground is the terminal's.
      if (t->second->kind() == TTY_PTY && ct.foreground_pgrp() != t->second->foreground_pgrp())
        return Bad(img, file, "foreground group " + std::to_string(ct.foreground_pgrp()) + " of its terminal, which says " +
                                  std::to_string(t->second->foreground_pgrp()));
    }
  }
  return Status::Ok();
}

}  // namespace cryo::image::validate
