// /proc/PID/status and /proc/PID/task/TID/status (proc_pid_status(5),
// fs/proc/array.c): every line the kernel prints, classified.
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"

namespace cryo::audit {

namespace {

constexpr Verdict R = Verdict::kRestored;
constexpr Verdict N = Verdict::kNotState;

Decision State(const Line& l) {
  const char s = l.value.empty() ? '?' : l.value[0];
  switch (s) {
    case 't':
      return {N, "cryo's own ptrace stop (a job-control stop is classified from the seize)"};
    case 'R':
    case 'S':
    case 'D':
    case 'I':
      return {N, "scheduler state; an interrupted system call is restarted after the restore"};
    case 'T':
      return {N, "a job-control stop, classified from the seize (restored stopped: tree/job_control.cc)"};
    case 'Z':
      return {Verdict::kRefused, "has a thread that exited and was not reaped (its main thread called pthread_exit?), "
                                 "which is not supported"};
    default:
      return {Verdict::kRefused, "is in state \"" + std::string(l.value) + "\" (exiting?), which cryo cannot dump"};
  }
}

Decision TracerPid(const Line& l) {
  if (l.cryo && l.value == std::to_string(l.cryo->pid)) return {N, "cryo's own seize"};
  if (l.value == "0") return {N, "not traced"};
  return {Verdict::kRefused, "is traced by pid " + std::string(l.value) +
                                 " (a debugger or tracer); detach it first, a tracer is not restored"};
}

Decision NsIds(const Line& l) {
  if (SplitWords(l.value).size() <= 1) return {R, "the same ids (clone3 set_tid, setsid, setpgid)"};
  return {Verdict::kRefused, "lives in a nested PID namespace (" + std::string(l.key) + " " + std::string(l.value) +
                                 "); restoring PID namespaces is not supported yet"};
}

Decision MustBeZero(const Line& l, std::string_view what) {
  if (l.value == "0" || l.value == "0 kB") return {N, "zero: nothing to restore"};
  return {Verdict::kRefused, std::string(what)};
}

Decision Kthread(const Line& l) { return MustBeZero(l, "is a kernel thread"); }
Decision VmPin(const Line& l) {
  return MustBeZero(l, "has memory pinned by the kernel (VmPin " + std::string(l.value) +
                           ": io_uring buffers, RDMA, vfio), which cannot be restored");
}
Decision CoreDumping(const Line& l) { return MustBeZero(l, "is writing a core dump"); }

Decision Seccomp(const Line& l) {
  if (l.value == "0") return {N, "no seccomp filter"};
  // cryo under seccomp can neither read nor suspend filters (ptrace(2)):
  // the tree's must then be cryo's own, inherited.
  const auto own = l.cryo->status.find("Seccomp");
  if (own == l.cryo->status.end() || own->second != "0")
    return SameAsCryo(l, l.cryo->status, "runs under seccomp other than cryo's (cryo runs under seccomp itself, "
                                         "so it can neither read nor suspend filters; run cryo without seccomp)");
  return {R, "seccomp mode and filters, per thread (PTRACE_SECCOMP_GET_FILTER; installed by the blob: tree/seccomp.cc)"};
}
Decision ThreadFeatures(const Line& l) {
  if (l.value.empty()) return {N, "no x86 thread feature enabled"};
  return {Verdict::kRefused, "uses x86 thread features (" + std::string(l.value) +
                                 ": shadow stack), which are not restored yet"};
}

constexpr Verdict X = Verdict::kRefused;
constexpr Against kCryo = Against::kCryoStatus;

constexpr std::string_view kMemStat = "memory accounting; every VMA is classified by itself";
constexpr std::string_view kSpeculation =
    "has speculation control set by prctl(PR_SET_SPECULATION_CTRL), which is not restored yet";
constexpr std::string_view kMems = "may only use some memory nodes (cpuset), which is not restored yet";
constexpr std::string_view kCreds = "credentials, set by the restorer blob (setresuid, setresgid, capset, ...)";

constexpr Rule kStatusRules[] = {
    {"Name", R, "thread name (PR_SET_NAME)", nullptr, Scope::kPerThread},
    {"Umask", R, "umask(2) in the restore helper"},
    {"State", N, "", State, Scope::kPerThread},
    {"Tgid", R, "the pid (clone3 set_tid)"},
    {"Ngid", N, "NUMA balancing group, chosen by the kernel"},
    {"Pid", R, "the thread id (clone3 set_tid)", nullptr, Scope::kPerThread},
    {"PPid", R, "the tree is rebuilt with the same parents"},
    {"TracerPid", N, "", TracerPid, Scope::kPerThread},
    {"Uid", R, kCreds, nullptr, Scope::kLikeLeader},
    {"Gid", R, kCreds, nullptr, Scope::kLikeLeader},
    {"FDSize", N, "the size of the fd table's allocation"},
    {"Groups", R, kCreds, nullptr, Scope::kLikeLeader},
    {"NStgid", N, "", NsIds},
    {"NSpid", N, "", NsIds, Scope::kPerThread},
    {"NSpgid", N, "", NsIds},
    {"NSsid", N, "", NsIds},
    {"Kthread", N, "", Kthread},
    {"VmPeak", N, kMemStat},
    {"VmSize", N, kMemStat},
    {"VmLck", N, "locked memory; each locked VMA is classified by its flags (lo)"},
    {"VmPin", N, "", VmPin},
    {"VmHWM", N, kMemStat},
    {"VmRSS", N, kMemStat},
    {"RssAnon", N, kMemStat},
    {"RssFile", N, kMemStat},
    {"RssShmem", N, kMemStat},
    {"VmData", N, kMemStat},
    {"VmStk", N, kMemStat},
    {"VmExe", N, kMemStat},
    {"VmLib", N, kMemStat},
    {"VmPTE", N, kMemStat},
    {"VmSwap", N, kMemStat},
    {"HugetlbPages", N, "hugetlb memory; hugetlb VMAs are classified by their flags (ht)"},
    {"CoreDumping", N, "", CoreDumping},
    {"THP_enabled", R, "THP disable (PR_GET_THP_DISABLE at dump, PR_SET_THP_DISABLE in the restore helper)"},
    {"untag_mask", X, "uses linear address masking (arch_prctl ARCH_ENABLE_TAGGED_ADDR), which is not restored yet",
     nullptr, Scope::kProcess, kCryo},
    {"Threads", N, "the number of threads; each is classified"},
    {"SigQ", N, "queued signals (each is restored) against RLIMIT_SIGPENDING (restored)"},
    {"SigPnd", R, "pending signals (PTRACE_PEEKSIGINFO, queued again by the blob)", nullptr, Scope::kPerThread},
    {"ShdPnd", R, "pending signals (PTRACE_PEEKSIGINFO, queued again by the blob)"},
    {"SigBlk", R, "blocked signals (PTRACE_SETSIGMASK at the release)", nullptr, Scope::kPerThread},
    {"SigIgn", R, "signal actions (rt_sigaction in the blob)"},
    {"SigCgt", R, "signal actions (rt_sigaction in the blob)"},
    {"CapInh", R, kCreds, nullptr, Scope::kLikeLeader},
    {"CapPrm", R, kCreds, nullptr, Scope::kLikeLeader},
    {"CapEff", R, kCreds, nullptr, Scope::kLikeLeader},
    {"CapBnd", R, kCreds, nullptr, Scope::kLikeLeader},
    {"CapAmb", R, kCreds, nullptr, Scope::kLikeLeader},
    {"NoNewPrivs", R, "no_new_privs (PR_SET_NO_NEW_PRIVS in the blob)", nullptr, Scope::kLikeLeader},
    {"Seccomp", N, "", Seccomp, Scope::kPerThread},
    {"Seccomp_filters", N, "", Seccomp, Scope::kPerThread},
    {"Speculation_Store_Bypass", X, kSpeculation, nullptr, Scope::kLikeLeader, kCryo},
    {"SpeculationIndirectBranch", X, kSpeculation, nullptr, Scope::kLikeLeader, kCryo},
    {"Cpus_allowed", R, "CPU affinity, per thread (sched_setaffinity at the release: tree/proc_attrs.cc)", nullptr,
     Scope::kPerThread},
    {"Cpus_allowed_list", R, "CPU affinity, per thread (tree/proc_attrs.cc)", nullptr, Scope::kPerThread},
    {"Mems_allowed", X, kMems, nullptr, Scope::kLikeLeader, kCryo},
    {"Mems_allowed_list", X, kMems, nullptr, Scope::kLikeLeader, kCryo},
    {"voluntary_ctxt_switches", N, "scheduler statistics", nullptr, Scope::kPerThread},
    {"nonvoluntary_ctxt_switches", N, "scheduler statistics", nullptr, Scope::kPerThread},
    {"x86_Thread_features", N, "", ThreadFeatures, Scope::kLikeLeader},
    {"x86_Thread_features_locked", N, "", ThreadFeatures, Scope::kLikeLeader},
};

}  // namespace

std::span<const Rule> StatusRules() { return kStatusRules; }

void ClassifyStatus(std::string_view text, const std::string& subject, const Baseline& cryo, const LeaderValues* leader,
                    Report* report) {
  for (const auto& [key, value] : KeyValueLines(text)) {
    Line line{key, value, &cryo, {}};
    ClassifyThreadAware(kStatusRules, "status", subject, line, leader, report);
  }
}

}  // namespace cryo::audit
