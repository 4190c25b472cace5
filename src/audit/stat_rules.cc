// /proc/PID/stat and /proc/PID/task/TID/stat (proc_pid_stat(5)): the 52
// fields, classified by name; a field past the last known one is refused.
#include <cstdlib>
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"

namespace cryo::audit {

namespace {

constexpr Verdict R = Verdict::kRestored;
constexpr Verdict N = Verdict::kNotState;

// The PF_* bits of include/linux/sched.h that say something cryo must refuse.
struct PfBit {
  uint64_t bit;
  const char* what;
};
constexpr PfBit kRefusedPf[] = {
    {0x00000004, "is exiting"},
    {0x00000010, "is an io_uring worker thread"},
    {0x00000080, "has its own machine-check kill policy (prctl PR_MCE_KILL), which is not restored yet"},
    {0x00004000, "is a kernel worker thread of a user process (vhost)"},
    {0x00200000, "is a kernel thread"},
    {0x08000000, "has an early machine-check kill policy (prctl PR_MCE_KILL), which is not restored yet"},
};

Decision Flags(const Line& l) {
  const uint64_t flags = std::strtoull(std::string(l.value).c_str(), nullptr, 10);
  for (const PfBit& b : kRefusedPf)
    if (flags & b.bit) return {Verdict::kRefused, b.what};
  return {N, "kernel bookkeeping flags (none that cryo must refuse)"};
}

Decision Policy(const Line& l) {
  if (l.value == "6") return {R, "SCHED_DEADLINE (sched_setattr at the release: tree/proc_attrs.cc)"};
  if (l.value == "7") return {Verdict::kRefused, "runs under SCHED_EXT, which is not restored yet"};
  return {R, "scheduling policy (sched_setscheduler in the restore helper)"};
}

constexpr std::string_view kAccounting = "accounting (the restored process's CPU-time clocks start again at 0)";
constexpr std::string_view kMmFields = "mm fields (PR_SET_MM_MAP in the blob)";
constexpr std::string_view kSignals = "signals (obsolete fields; see status)";

// In field order: kStatRules[i] is field i + 1 of proc_pid_stat(5).
constexpr Rule kStatRules[] = {
    {"pid", R, "clone3 set_tid", nullptr, Scope::kPerThread},
    {"comm", R, "thread name (PR_SET_NAME)", nullptr, Scope::kPerThread},
    {"state", N, "classified from status", nullptr, Scope::kPerThread},
    {"ppid", R, "the tree is rebuilt with the same parents"},
    {"pgrp", R, "process group (setpgid)"},
    {"session", R, "session (setsid)"},
    {"tty_nr", R, "controlling terminal (TIOCSCTTY)"},
    {"tpgid", R, "foreground group (TIOCSPGRP)"},
    {"flags", N, "", Flags, Scope::kPerThread},
    {"minflt", N, kAccounting, nullptr, Scope::kPerThread},
    {"cminflt", N, kAccounting},
    {"majflt", N, kAccounting, nullptr, Scope::kPerThread},
    {"cmajflt", N, kAccounting},
    {"utime", N, kAccounting, nullptr, Scope::kPerThread},
    {"stime", N, kAccounting, nullptr, Scope::kPerThread},
    {"cutime", N, kAccounting},
    {"cstime", N, kAccounting},
    {"priority", N, "derived from nice and the policy", nullptr, Scope::kPerThread},
    {"nice", R, "nice, per thread (sched_setattr at the release)", nullptr, Scope::kPerThread},
    {"num_threads", N, "the number of threads; each is classified"},
    {"itrealvalue", N, "always 0"},
    {"starttime", N, "the restored process starts at the restore"},
    {"vsize", N, "memory accounting; every VMA is classified by itself"},
    {"rss", N, "memory accounting"},
    {"rsslim", R, "RLIMIT_RSS (setrlimit)"},
    {"startcode", R, kMmFields},
    {"endcode", R, kMmFields},
    {"startstack", R, kMmFields},
    {"kstkesp", N, "0 unless the process is dumping core", nullptr, Scope::kPerThread},
    {"kstkeip", N, "0 unless the process is dumping core", nullptr, Scope::kPerThread},
    {"signal", R, kSignals, nullptr, Scope::kPerThread},
    {"blocked", R, kSignals, nullptr, Scope::kPerThread},
    {"sigignore", R, kSignals},
    {"sigcatch", R, kSignals},
    {"wchan", N, "0 (the wait channel is not shown here)", nullptr, Scope::kPerThread},
    {"nswap", N, "always 0"},
    {"cnswap", N, "always 0"},
    {"exit_signal", R, "exit signal (clone3)"},
    {"processor", N, "the CPU it last ran on", nullptr, Scope::kPerThread},
    {"rt_priority", R, "real-time priority, per thread (sched_setattr at the release)", nullptr, Scope::kPerThread},
    {"policy", N, "", Policy, Scope::kPerThread},
    {"delayacct_blkio_ticks", N, kAccounting, nullptr, Scope::kPerThread},
    {"guest_time", N, kAccounting, nullptr, Scope::kPerThread},
    {"cguest_time", N, kAccounting},
    {"start_data", R, kMmFields},
    {"end_data", R, kMmFields},
    {"start_brk", R, kMmFields},
    {"arg_start", R, kMmFields},
    {"arg_end", R, kMmFields},
    {"env_start", R, kMmFields},
    {"env_end", R, kMmFields},
    {"exit_code", N, "the exit status, for a process that is not a zombie 0"},
};

}  // namespace

std::span<const Rule> StatRules() { return kStatRules; }

Result<std::vector<std::pair<std::string, std::string>>> StatFields(std::string_view text) {
  std::string_view line = Trim(text);
  const size_t open = line.find('('), close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return Status::Error("malformed stat line");
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back(kStatRules[0].key, std::string(Trim(line.substr(0, open))));
  out.emplace_back(kStatRules[1].key, std::string(line.substr(open + 1, close - open - 1)));
  size_t n = 2;
  for (std::string_view w : SplitWords(line.substr(close + 1))) {
    // A field past the table: named by its number, which no rule knows.
    std::string name = n < std::size(kStatRules) ? std::string(kStatRules[n].key) : "field " + std::to_string(n + 1);
    out.emplace_back(std::move(name), std::string(w));
    ++n;
  }
  return out;
}

Status ClassifyStat(std::string_view text, const std::string& subject, const Baseline& cryo, const LeaderValues* leader,
                    Report* report) {
  CRYO_ASSIGN_OR_RETURN(auto fields, StatFields(text));
  for (const auto& [key, value] : fields) {
    Line line{key, value, &cryo, {}};
    ClassifyThreadAware(kStatRules, "stat", subject, line, leader, report);
  }
  return Status::Ok();
}

}  // namespace cryo::audit
