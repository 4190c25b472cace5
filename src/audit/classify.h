// The classifiers, one per source of facts, each working on the text the
// kernel shows (so tests feed them canned /proc text). Each adds one item per
// line, field, flag or entry to a Report; what no table knows is refused.
// Sources passed as string_view must be literals (the report keeps them).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audit/item.h"
#include "audit/rules.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo::audit {

// A thread's leader's values of the same file, by key.
using LeaderValues = std::map<std::string, std::string, std::less<>>;

// For a thread other than its process's leader (`leader` set), the rule's
// scope decides: kProcess lines were classified with the process, kPerThread
// ones are classified as usual, kLikeLeader ones must equal the leader's.
void ClassifyThreadAware(std::span<const Rule> table, std::string_view source, const std::string& subject,
                         const Line& line, const LeaderValues* leader, Report* report);

// status_rules.cc: /proc/PID/status, or a thread's (leader: its leader's values).
std::span<const Rule> StatusRules();
void ClassifyStatus(std::string_view text, const std::string& subject, const Baseline& cryo, const LeaderValues* leader,
                    Report* report);

// stat_rules.cc: /proc/PID/stat, fields named as in proc_pid_stat(5).
std::span<const Rule> StatRules();
Result<std::vector<std::pair<std::string, std::string>>> StatFields(std::string_view text);
Status ClassifyStat(std::string_view text, const std::string& subject, const Baseline& cryo, const LeaderValues* leader,
                    Report* report);

// vma_rules.cc: /proc/PID/smaps (every key of every VMA, each VmFlags flag)
// and /proc/PID/numa_maps (each VMA's memory policy).
std::span<const Rule> VmFlagRules();
Status ClassifySmaps(std::string_view text, pid_t pid, const Baseline& cryo, Report* report);
Status ClassifyNumaMaps(std::string_view text, pid_t pid, Report* report);

// fdinfo_rules.cc: /proc/PID/fdinfo/N of an fd of `kind` (as the dump
// identified it), and the owner and signal fcntl(2) shows on a duplicate.
void ClassifyFdInfo(image::FdKind kind, const proc::FdInfo& info, const std::string& subject, Report* report);
struct FdOwner {
  int type = 0;  // F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP
  pid_t pid = 0;
  int sig = 0;   // F_GETSIG
};
void ClassifyFdOwner(const FdOwner& owner, const std::string& subject, Report* report);

// ns_rules.cc: /proc/PID/ns (name -> link); for a thread, against its leader's.
void ClassifyNamespaces(const std::map<std::string, std::string>& links, const std::string& subject,
                        const Baseline& cryo, const std::map<std::string, std::string>* leader, Report* report);
// /proc/PID/cgroup; for a thread, against its leader's text.
void ClassifyCgroups(std::string_view text, const std::string& subject, const Baseline& cryo,
                     const std::string* leader, Report* report);

// locks_rules.cc: /proc/locks, each lock held or awaited by a pid of `tree`.
// Locks whose LockIdentity() is in `shown_by_fdinfo` were refused by their
// fdinfo line already (which names the fd) and are only counted.
void ClassifyLocks(std::string_view text, const std::set<pid_t>& tree, const std::set<std::string>& shown_by_fdinfo,
                   Report* report);
// A lock line of /proc/locks or an fdinfo "lock:" value without its leading
// number: "POSIX ADVISORY WRITE 1234 fe:00:5 0 EOF".
std::string LockIdentity(std::string_view line);

// proc_rules.cc: the entries of /proc/PID (each file is named by the source
// that classifies it, or said not to be state) and the small per-process
// files (name -> content) that are one value each.
void ClassifyProcEntries(const std::vector<std::string>& entries, const std::string& subject, Report* report);
std::span<const std::string_view> SmallProcFiles();
void ClassifySmallFile(std::string_view name, std::string_view content, const std::string& subject,
                       const Baseline& cryo, Report* report);

// The I/O priority of a task (ioprio_get(2)), against cryo's.
void ClassifyIoPriority(int ioprio, const std::string& subject, const Baseline& cryo, Report* report);

}  // namespace cryo::audit
