// The audit pass ("restored or refused, nothing in between"): one pass over
// every process of a seized tree, before cryo changes or writes anything,
// that classifies each item the kernel shows about it (classify.h) and
// refuses the dump, naming every refused item at once, if any is refused.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "audit/item.h"
#include "audit/rules.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo::audit {

// What the dump read about a process while describing it, so that the audit
// does not read it again.
struct ProcessShown {
  pid_t pid = 0;
  std::vector<pid_t> tids;                  // the leader first
  std::string_view status, stat, smaps;     // the leader's /proc texts
  const std::vector<proc::Vma>* vmas = nullptr;
  const image::FdTable* fds = nullptr;      // the fds described, each with its kind
  const std::vector<proc::FdInfo>* fd_infos = nullptr;  // in the order of `fds`
  std::string refusal;                      // describing stopped here ("" if it did not)
};

struct TreeShown {
  std::vector<ProcessShown> processes;  // the root first
  std::vector<pid_t> zombies;
  pid_t root_parent = 0;
};

// The audit in three parts, so that the first runs on several threads:
// What /proc shows about one process, and its fds' owners (any thread).
// `list_entries`: classify the entries of /proc/PID too (the same for every
// process of a kernel: once a tree is enough). `lock_ids` gets the locks its
// fdinfo shows (LockIdentity).
Status AuditProcessFiles(const ProcessShown& p, const Baseline& cryo, bool list_entries, Report* report,
                         std::set<std::string>* lock_ids);
// How each task of the process was stopped by the seize: PTRACE_GETSIGINFO,
// so on the thread that seized the tree, before any remote system call.
void AuditSeizeStops(const ProcessShown& p, Report* report);
// What concerns the tree as a whole: /proc/locks, SysV semaphore undo
// lists, what processes share (kcmp), zombies whose threads run on.
Status AuditTreeWide(const TreeShown& tree, const std::set<std::string>& lock_ids, Report* report);

// All three in turn, on the thread that seized the tree. The attributes
// only a system call in the process shows are classified apart, from the
// dump's batch of remote calls (remote_rules.h).
Result<Report> AuditTree(const TreeShown& tree, const Baseline& cryo);

}  // namespace cryo::audit
