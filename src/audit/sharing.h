// What processes of the tree share with each other (or the root with its
// parent), and what a thread stopped sharing with its leader: kcmp(2).
#pragma once

#include <sys/types.h>

#include <vector>

#include "audit/item.h"
#include "base/status.h"

namespace cryo::audit {

struct SharingInput {
  pid_t pid = 0;
  std::vector<pid_t> tids;  // the leader first
};

// `procs[0]` is the root; `root_parent` its parent (outside the tree).
// `semaphores`: whether SysV semaphore sets exist in cryo's IPC namespace.
Status ClassifySharing(const std::vector<SharingInput>& procs, pid_t root_parent, bool semaphores, Report* report);

}  // namespace cryo::audit
