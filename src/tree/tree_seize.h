// Freezing a whole process tree: the root and every descendant, seized top-down
// and re-scanned until no new child appears (a seized process cannot fork any
// more; one caught mid-fork brings its child along via PTRACE_O_TRACEFORK).
// Zombies cannot be seized: they are recorded with their exit status.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "seize/seize.h"

namespace cryo {

struct ZombieInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  int exit_status = 0;  // raw wait status
  int exit_signal = 0;
  std::string comm;
};

class SeizedTree {
 public:
  static Result<SeizedTree> Seize(pid_t root);

  // Parents before children; processes()[0] is the root.
  std::vector<std::unique_ptr<SeizedProcess>>& processes() { return processes_; }
  const std::vector<ZombieInfo>& zombies() const { return zombies_; }
  pid_t ParentOf(pid_t pid) const;

  // Refuses a process of the tree that traces a task (the relationship
  // cannot be restored), naming both: every task of the system is looked at
  // (only /proc/PID/task/TID/status shows who traces whom), so it is called
  // only when a process might trace (DumpProcessCore's `may_trace`).
  Status CheckNoTracees() const;

  Status DetachAll();
  Status KillAll();

 private:
  std::vector<std::unique_ptr<SeizedProcess>> processes_;
  std::vector<ZombieInfo> zombies_;
  std::vector<std::pair<pid_t, pid_t>> parent_;  // (pid, ppid)
};

}  // namespace cryo
