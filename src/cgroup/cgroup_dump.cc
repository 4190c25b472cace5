#include "cgroup/cgroup_dump.h"

#include <map>

#include "cgroup/cgroup_paths.h"

namespace cryo::cgroup {

namespace {

std::string Proc(pid_t pid, pid_t tid) {
  return "/proc/" + std::to_string(pid) + (tid == pid ? "" : "/task/" + std::to_string(tid)) + "/cgroup";
}

bool Same(const std::vector<Membership>& a, const std::vector<Membership>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].hierarchy != b[i].hierarchy || a[i].path != b[i].path) return false;
  return true;
}

}  // namespace

Result<CgroupRecords> CollectCgroups(const std::vector<ProcessTasks>& procs) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Membership> own, ReadProcCgroup("/proc/self/cgroup"));
  std::map<std::string, std::string> mine;
  for (const Membership& m : own) mine[m.hierarchy] = m.path;
  std::vector<proc::MountInfo> mounts;
  bool mounts_read = false;
  CgroupRecords out;
  for (const ProcessTasks& p : procs) {
    const std::string who = "pid " + std::to_string(p.pid);
    CRYO_ASSIGN_OR_RETURN(std::vector<Membership> cgs, ReadProcCgroup(Proc(p.pid, p.pid)));
    for (pid_t tid : p.tids) {
      if (tid == p.pid) continue;
      auto tcgs = ReadProcCgroup(Proc(p.pid, tid));
      if (!tcgs.ok()) continue;  // the thread exited (it cannot: it is seized; or /proc raced)
      if (Same(*tcgs, cgs)) continue;
      for (const Membership& t : *tcgs)
        for (const Membership& m : cgs)
          if (t.hierarchy == m.hierarchy && t.path != m.path)
            return Status::Error("task " + std::to_string(tid) + " of " + who + " is in cgroup " + t.path +
                                 " of hierarchy " + HierarchyName(t.hierarchy) + ", its process in " + m.path +
                                 ": threads in cgroups of their own (cgroup v2 threaded mode, v1 per-thread tasks) "
                                 "are not restored; move the thread to its process's cgroup first");
      return Status::Error("the threads of " + who + " are in different cgroups; they are not restored");
    }
    std::vector<image::CgroupPath>& rec = out[p.pid];
    for (const Membership& m : cgs) {
      const auto base = mine.find(m.hierarchy);
      if (base == mine.end())
        return Status::Error(who + " is in cgroup hierarchy " + HierarchyName(m.hierarchy) + ", which cryo is not in");
      if (m.path.starts_with("/.."))
        return Status::Error(who + " is in cgroup " + m.path + " of hierarchy " + HierarchyName(m.hierarchy) +
                             ", outside cryo's cgroup namespace");
      image::CgroupPath c;
      c.set_hierarchy(m.hierarchy);
      c.set_path(RelativePath(m.path, base->second));
      if (!c.path().empty()) {
        // The restore will have to write to this hierarchy: it must be mounted.
        if (!mounts_read) {
          CRYO_ASSIGN_OR_RETURN(mounts, OwnMounts());
          mounts_read = true;
        }
        auto dir = CgroupDir(mounts, m.hierarchy, m.path);
        if (!dir.ok())
          return Status::Error(who + " is in cgroup " + m.path + " of hierarchy " + HierarchyName(m.hierarchy) +
                               ", not cryo's (" + base->second + "), and " + dir.status().message() +
                               ": cryo could not put the restored process back in it");
      }
      rec.push_back(std::move(c));
    }
  }
  return out;
}

bool MovesAnyProcess(const CgroupRecords& records) {
  for (const auto& [pid, rec] : records)
    for (const image::CgroupPath& c : rec)
      if (!c.path().empty()) return true;
  return false;
}

}  // namespace cryo::cgroup
