// The rest of /proc/PID (proc(5), fs/proc/base.c): each entry of the
// directory is named by the classifier that covers it or said not to be
// state, so a file a newer kernel adds is refused until someone classifies
// it; and the small files that hold one value each.
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"

namespace cryo::audit {

namespace {

constexpr Verdict R = Verdict::kRestored;
constexpr Verdict N = Verdict::kNotState;
constexpr Verdict X = Verdict::kRefused;
constexpr Against kCryo = Against::kCryoFile;

constexpr std::string_view kClassified = "classified item by item";
constexpr std::string_view kMemory = "memory (each VMA is classified, its pages stored)";
constexpr std::string_view kStats = "statistics";

constexpr Rule kEntries[] = {
    {"task", R, "each thread is classified"},
    {"fd", R, "each fd is classified"},
    {"fdinfo", R, kClassified},
    {"map_files", R, kMemory},
    {"ns", R, kClassified},
    {"net", N, "the network namespace's view (ns/net is classified)"},
    {"environ", R, kMemory},
    {"cmdline", R, kMemory},
    {"auxv", R, "auxv (PR_SET_MM_MAP)"},
    {"status", R, kClassified},
    {"stat", R, kClassified},
    {"statm", N, kStats},
    {"personality", R, "personality(2)"},
    {"limits", R, "setrlimit (a hard limit above cryo's is kept lower, with a warning)"},
    {"sched", N, "scheduler statistics (the policy is classified from stat)"},
    {"autogroup", R, kClassified},
    {"timens_offsets", N, "the time namespace's offsets (ns/time is classified)"},
    {"comm", R, "PR_SET_NAME"},
    {"syscall", N, "the system call it is in (restarted after the restore)"},
    {"maps", R, kMemory},
    {"smaps", R, kClassified},
    {"smaps_rollup", N, "the sum of smaps"},
    {"numa_maps", R, kClassified},
    {"mem", R, kMemory},
    {"pagemap", R, kMemory},
    {"clear_refs", N, "write-only"},
    {"cwd", R, "chdir (a deleted one: fchdir to it, created again, files/unlinked_restore.cc)"},
    {"root", R, "chroot"},
    {"exe", R, "PR_SET_MM_MAP exe_fd (a deleted one: created again, files/unlinked_restore.cc)"},
    {"mounts", N, "the mount namespace's view (ns/mnt is classified)"},
    {"mountinfo", N, "the mount namespace's view (ns/mnt is classified)"},
    {"mountstats", N, "the mount namespace's view (ns/mnt is classified)"},
    {"attr", R, kClassified},
    {"wchan", N, "where it sleeps in the kernel"},
    {"stack", N, "its kernel stack"},
    {"schedstat", N, kStats},
    {"latency", N, kStats},
    {"cpuset", N, "the cpuset cgroup (cgroup is classified)"},
    {"cgroup", R, kClassified},
    {"cpu_resctrl_groups", R, kClassified},
    {"oom_score", N, "computed by the kernel"},
    {"oom_adj", N, "derived from oom_score_adj"},
    {"oom_score_adj", R, kClassified},
    {"loginuid", R, kClassified},
    {"sessionid", N, "the audit session, numbered by the kernel when the login uid is set (cannot be chosen)"},
    {"make-it-fail", N, "fault injection (debugging)"},
    {"fail-nth", N, "fault injection (debugging)"},
    {"io", N, kStats},
    {"uid_map", N, "the user namespace's (ns/user is classified)"},
    {"gid_map", N, "the user namespace's (ns/user is classified)"},
    {"projid_map", N, "the user namespace's (ns/user is classified)"},
    {"setgroups", N, "the user namespace's (ns/user is classified)"},
    {"timers", R, "POSIX timers (posix_timers.cc)"},
    {"timerslack_ns", R, "timer slack (PR_SET_TIMERSLACK)"},
    {"patch_state", N, "kernel live patching"},
    {"stack_depth", N, kStats},
    {"arch_status", N, "AVX-512 usage statistics"},
    {"seccomp_cache", N, "a debugging view (Seccomp in status is classified)"},
    {"ksm_merging_pages", N, kStats},
    {"ksm_stat", R, kClassified},
    {"coredump_filter", R, kClassified},
    {"children", N, "the children (the tree is walked)"},
};

Decision Autogroup(const Line& l) {
  // "/autogroup-182 nice 0"
  std::vector<std::string_view> w = SplitWords(l.value);
  if (w.size() == 3 && w[1] == "nice" && w[2] == "0") return {N, "a session's autogroup; a new one has nice 0 too"};
  return {R, "the autogroup's nice value (set by the session leader: tree/proc_attrs.cc)"};
}

constexpr Rule kSmallFiles[] = {
    // tree/proc_attrs.cc restores these, and refuses what it cannot (an audit
    // session it cannot rebuild, an oom_score_adj below cryo's minimum).
    {"loginuid", R, "the audit login uid (tree/proc_attrs.cc)"},
    {"oom_score_adj", R, "the OOM score adjustment (tree/proc_attrs.cc)"},
    {"coredump_filter", R, "the core dump filter (tree/proc_attrs.cc)"},
    {"attr/current", X, "runs under a security label (LSM) other than cryo's, which is not restored yet", nullptr,
     Scope::kProcess, kCryo},
    {"cpu_resctrl_groups", X, "is in a resource control group other than cryo's, which is not restored yet", nullptr,
     Scope::kProcess, kCryo},
    {"autogroup", N, "", Autogroup},
};

constexpr Rule kKsmStat[] = {
    {"ksm_rmap_items", N, kStats},
    {"ksm_zero_pages", N, kStats},
    {"ksm_merging_pages", N, kStats},
    {"ksm_process_profit", N, kStats},
    {"ksm_merge_any", N, "",
     [](const Line& l) -> Decision {
       if (l.value == "no") return {N, "off"};
       return {X, "has KSM merging on for all its memory (prctl PR_SET_MEMORY_MERGE), which is not restored yet"};
     }},
    {"ksm_mergeable", N, "derived from the VMAs' flags (mg)"},
};

constexpr std::string_view kSmallFileNames[] = {"loginuid",     "oom_score_adj",      "coredump_filter",
                                                "attr/current", "cpu_resctrl_groups", "autogroup",
                                                "ksm_stat"};

}  // namespace

void ClassifyProcEntries(const std::vector<std::string>& entries, const std::string& subject, Report* report) {
  for (const std::string& e : entries) ClassifyLine(kEntries, "/proc/PID", subject, Line{e, "", nullptr, {}}, report);
}

std::span<const std::string_view> SmallProcFiles() { return kSmallFileNames; }

void ClassifyIoPriority(int ioprio, const std::string& subject, const Baseline& cryo, Report* report) {
  if (ioprio == cryo.ioprio) return report->Tally(subject, "ioprio_get", "ioprio", Verdict::kInherited);
  // Per thread, set at the release (tree/proc_attrs.cc).
  report->Tally(subject, "ioprio_get", "ioprio", Verdict::kRestored);
}

void ClassifySmallFile(std::string_view name, std::string_view content, const std::string& subject,
                       const Baseline& cryo, Report* report) {
  if (name == "ksm_stat") {
    // "ksm_rmap_items 0", "ksm_merge_any: no": a key, maybe a colon, a value.
    for (std::string_view line : SplitLines(content)) {
      std::vector<std::string_view> w = SplitWords(line);
      if (w.empty()) continue;
      std::string_view key = w[0];
      if (key.ends_with(':')) key.remove_suffix(1);
      ClassifyLine(kKsmStat, "ksm_stat", subject, Line{key, w.size() > 1 ? w[1] : "", &cryo, {}}, report);
    }
    return;
  }
  ClassifyLine(kSmallFiles, "/proc/PID", subject, Line{name, Trim(content), &cryo, {}}, report);
}

}  // namespace cryo::audit
