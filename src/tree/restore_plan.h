// The restore plan: who clones whom, so that the rebuilt tree has the image's
// parents, sessions and process groups.
//
// A process can only enter a session by inheriting it (setsid(2) makes a new
// one, led by the caller) and can only join a process group that exists in its
// own session (setpgid(2)). A session or group whose leader has exited lives on
// in the image as an id that no process has. To rebuild it, the plan adds a
// *ghost*: a temporary process cloned with that id as its pid, which leads the
// session (setsid) or group (setpgid(0,0)) until every process has joined, and
// then exits. The members of a ghost session are cloned by the ghost itself,
// and reach their image parent when the ghost exits: that parent is a child
// subreaper (PR_SET_CHILD_SUBREAPER), which is how they got it in the original
// too (see prctl(2)).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "cryo/image.pb.h"

namespace cryo {

struct PlannedTask {
  pid_t pid = 0;
  enum Kind { kProcess, kSessionGhost, kGroupGhost } kind = kProcess;
  // The task that clones this one (0: cryo itself, for the root).
  pid_t creator = 0;
  // What this task clones, in order: image processes and ghosts.
  std::vector<pid_t> clones;
  bool ghost() const { return kind != kProcess; }
};

struct RestorePlan {
  std::map<pid_t, PlannedTask> tasks;  // image processes and ghosts
  std::vector<pid_t> ghosts;
  // Sessions and groups the plan cannot rebuild (their leader is outside the
  // image, or its members cannot all descend from one ghost): for warnings.
  std::vector<std::string> notes;

  const PlannedTask& at(pid_t pid) const { return tasks.at(pid); }
  size_t processes() const { return tasks.size() - ghosts.size(); }
};

// `cores` holds every process of the image (live and zombie), by pid.
RestorePlan PlanRestore(pid_t root, const std::map<pid_t, const image::ProcessCore*>& cores);

}  // namespace cryo
