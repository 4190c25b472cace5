// The audit pass ("restored or refused, nothing in between"): one pass over
// every process of a seized tree, before cryo changes or writes anything,
// that classifies each item the kernel shows about it (classify.h) and
// refuses the dump, naming every refused item at once, if any is refused.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

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
  const user_regs_struct* regs = nullptr;   // the leader's, as seized
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

// Classifies everything about every process of `tree`: the facts given plus
// what it reads itself (thread files, namespaces, cgroups, small /proc files,
// /proc/locks, kcmp, fd owners, the stop each task was seized in, and the
// remote queries of remote_rules.h). Runs on the thread that seized the
// tree, before any other remote system call: those it makes touch only
// registers, which the detach restores.
Result<Report> AuditTree(const TreeShown& tree, const Baseline& cryo);

}  // namespace cryo::audit
