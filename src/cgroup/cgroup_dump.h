// cgroup membership, dump half: each process's cgroup in every hierarchy,
// recorded relative to cryo's own cgroup there (CgroupPath.path: "" is
// cryo's, "a/b" below it, "../x" beside it). Refused before anything is
// written: a thread in another cgroup than its process (cgroup v2 threaded
// mode, v1 per-thread "tasks"), a cgroup outside cryo's cgroup namespace, and
// a cgroup other than cryo's in a hierarchy that is not mounted where cryo
// runs (cryo could not put the process back). Controller settings (limits):
// cgroup_settings.h.
#pragma once

#include <sys/types.h>

#include <map>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::cgroup {

struct ProcessTasks {
  pid_t pid;
  std::vector<pid_t> tids;  // every thread, the leader first
};

using CgroupRecords = std::map<pid_t, std::vector<image::CgroupPath>>;

Result<CgroupRecords> CollectCgroups(const std::vector<ProcessTasks>& procs);

// Whether a record places a process elsewhere than cryo's cgroup (feature
// "cgroups": an older cryo would leave it in its own).
bool MovesAnyProcess(const CgroupRecords& records);

}  // namespace cryo::cgroup
