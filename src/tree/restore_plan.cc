#include "tree/restore_plan.h"

#include <set>

namespace cryo {

namespace {

bool HasSession(const RestorePlan& plan, const std::map<pid_t, const image::ProcessCore*>& cores, pid_t sid) {
  if (cores.count(sid)) return true;
  auto it = plan.tasks.find(sid);
  return it != plan.tasks.end() && it->second.kind == PlannedTask::kSessionGhost;
}

}  // namespace

RestorePlan PlanRestore(pid_t root, const std::map<pid_t, const image::ProcessCore*>& cores) {
  RestorePlan plan;
  for (const auto& [pid, core] : cores) {
    PlannedTask& t = plan.tasks[pid];
    t.pid = pid;
    t.creator = pid == root ? 0 : (cores.count(core->ppid()) ? core->ppid() : root);
  }

  // Sessions whose leader is gone: the topmost members (whose parent is in
  // another session) descend from a ghost that their common parent clones.
  std::map<pid_t, std::vector<pid_t>> topmost;
  for (const auto& [pid, core] : cores) {
    if (pid == root || cores.count(core->sid())) continue;
    const image::ProcessCore* parent = cores.at(plan.tasks[pid].creator);
    if (parent->sid() != core->sid()) topmost[core->sid()].push_back(pid);
  }
  const pid_t root_sid = cores.at(root)->sid();
  for (const auto& [sid, members] : topmost) {
    std::set<pid_t> parents;
    for (pid_t m : members) parents.insert(plan.tasks[m].creator);
    if (sid == root_sid || parents.size() != 1 || plan.tasks.count(sid)) {
      plan.notes.push_back("session " + std::to_string(sid) + ": its leader is outside the image");
      continue;
    }
    PlannedTask& g = plan.tasks[sid];
    g.pid = sid;
    g.kind = PlannedTask::kSessionGhost;
    g.creator = *parents.begin();
    for (pid_t m : members) plan.tasks[m].creator = sid;
    plan.ghosts.push_back(sid);
  }

  // Groups whose leader is gone, in a session the plan rebuilds: a ghost
  // cloned by one of their members (already in that session) leads them.
  std::map<pid_t, std::vector<pid_t>> groups;
  for (const auto& [pid, core] : cores)
    if (!plan.tasks.count(core->pgid())) groups[core->pgid()].push_back(pid);
  for (const auto& [pgid, members] : groups) {
    const pid_t sid = cores.at(members.front())->sid();
    if (!HasSession(plan, cores, sid)) {
      plan.notes.push_back("process group " + std::to_string(pgid) + ": its session " + std::to_string(sid) +
                           " is led from outside the image");
      continue;
    }
    pid_t creator = members.front();
    for (pid_t m : members)
      if (!cores.at(m)->zombie()) {
        creator = m;
        break;
      }
    PlannedTask& g = plan.tasks[pgid];
    g.pid = pgid;
    g.kind = PlannedTask::kGroupGhost;
    g.creator = creator;
    plan.ghosts.push_back(pgid);
  }

  for (auto& [pid, t] : plan.tasks)
    if (pid != root) plan.tasks[t.creator].clones.push_back(pid);
  return plan;
}

}  // namespace cryo
