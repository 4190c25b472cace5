#include "cgroup/cgroup_restore.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "base/janitor.h"
#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "cgroup/cgroup_paths.h"
#include "cgroup/cgroup_settings.h"

namespace cryo::cgroup {

namespace {

bool IsCpuset(const std::string& hierarchy) {
  for (size_t start = 0; start <= hierarchy.size();) {
    size_t comma = hierarchy.find(',', start);
    if (comma == std::string::npos) comma = hierarchy.size();
    if (hierarchy.compare(start, comma - start, "cpuset") == 0) return true;
    start = comma + 1;
  }
  return false;
}

std::string Parent(const std::string& dir) { return dir.substr(0, dir.rfind('/')); }

}  // namespace

Result<CgroupRoots> ParseCgroupRoots(const std::vector<std::string>& options) {
  CgroupRoots roots;
  for (const std::string& o : options) {
    std::string hierarchy, path = o;
    if (!o.starts_with("/")) {
      const size_t colon = o.find(':');
      if (colon == std::string::npos) return Status::Error("--cgroup-root " + o + ": expected PATH or HIERARCHY:PATH");
      hierarchy = o.substr(0, colon);
      path = o.substr(colon + 1);
    }
    if (!path.starts_with("/") || path.find("/..") != std::string::npos)
      return Status::Error("--cgroup-root " + o + ": the path must be absolute (as /proc/self/cgroup shows cgroups)");
    if (o.starts_with("/"))
      roots.all = path;
    else
      roots.by_hierarchy[hierarchy == "cgroup2" ? "" : hierarchy] = path;
  }
  return roots;
}

Result<std::unique_ptr<CgroupPlacement>> CgroupPlacement::Prepare(const image::LoadedImage& img,
                                                                   const CgroupRoots& roots) {
  std::unique_ptr<CgroupPlacement> p(new CgroupPlacement());
  // The dump records every line of /proc/PID/cgroup: a process listing other
  // hierarchies than cryo has here would be placed wrong in some (a missing
  // one would silently stay in cryo's cgroup). Checked before anything is made.
  CRYO_ASSIGN_OR_RETURN(std::vector<Membership> here, ReadProcCgroup("/proc/self/cgroup"));
  std::set<std::string> own_hierarchies;
  for (const Membership& m : here) own_hierarchies.insert(m.hierarchy);
  for (const auto& [pid, proc] : img.processes) {
    if (proc.core.zombie() || proc.core.cgroups().empty()) continue;
    std::set<std::string> listed;
    for (const image::CgroupPath& c : proc.core.cgroups()) listed.insert(c.hierarchy());
    if (listed != own_hierarchies)
      return Status::Error("pid " + std::to_string(pid) + ": the image lists " + std::to_string(listed.size()) +
                           " cgroup hierarchies, this system has " + std::to_string(own_hierarchies.size()) +
                           " others: it cannot be placed in the same cgroups");
  }
  // Hierarchies with work to do: a process outside cryo's cgroup, or a root given.
  std::map<std::string, bool> work;
  for (const auto& [pid, proc] : img.processes)
    for (const image::CgroupPath& c : proc.core.cgroups())
      work[c.hierarchy()] = work[c.hierarchy()] || !c.path().empty() || !roots.all.empty() ||
                            roots.by_hierarchy.count(c.hierarchy());
  // The tree's cgroup namespace: its root's helper moves to the root first.
  for (const image::CgroupPath& c : img.namespaces.cgroup().roots())
    if (!c.path().empty()) work[c.hierarchy()] = true;
  if (std::none_of(work.begin(), work.end(), [](const auto& w) { return w.second; })) return p;
  for (const auto& [h, path] : roots.by_hierarchy)
    if (!work.count(h)) return Status::Error("--cgroup-root: the image has no process in cgroup hierarchy " + HierarchyName(h));

  CRYO_ASSIGN_OR_RETURN(std::vector<Membership> own, ReadProcCgroup("/proc/self/cgroup"));
  std::map<std::string, std::string> mine;
  for (const Membership& m : own) mine[m.hierarchy] = m.path;
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::MountInfo> mounts, OwnMounts());
  // The directory of `c` under the root chosen for its hierarchy.
  auto locate = [&](const image::CgroupPath& c, const std::string& who) -> Result<std::string> {
    std::string base;
    if (auto r = roots.by_hierarchy.find(c.hierarchy()); r != roots.by_hierarchy.end()) {
      base = r->second;
    } else if (!roots.all.empty()) {
      base = roots.all;
    } else if (auto m = mine.find(c.hierarchy()); m != mine.end()) {
      base = m->second;
    } else {
      return Status::Error(who + ": this system has no such hierarchy");
    }
    auto target = JoinPath(base, c.path());
    if (!target.ok()) return target.status().Prefixed(who);
    auto dir = CgroupDir(mounts, c.hierarchy(), *target);
    if (!dir.ok()) return dir.status().Prefixed(who);
    return *dir;
  };
  // Controller settings (cgroup_settings.h), before anything is made: a
  // cgroup that exists must have the recorded ones; one cryo makes gets them
  // in MakeDir.
  const double t0 = Now();
  for (const image::CgroupSettings& s : img.namespaces.cgroup_settings()) {
    const std::string who = "cgroup " + s.cgroup().path() + " of hierarchy " + HierarchyName(s.cgroup().hierarchy());
    CRYO_ASSIGN_OR_RETURN(std::string dir, locate(s.cgroup(), who));
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) {
      CRYO_RETURN_IF_ERROR(CheckExistingSettings(dir, s));
    } else if (errno == ENOENT) {
      p->settings_[dir] = &s;
    } else {
      return Status::FromErrno("stat " + dir);
    }
  }
  auto make = [&](const image::CgroupPath& c, const std::string& who) -> Result<std::string> {
    CRYO_ASSIGN_OR_RETURN(std::string dir, locate(c, who));
    CRYO_RETURN_IF_ERROR(p->MakeDir(dir, c.hierarchy()).Prefixed(who));
    return dir;
  };
  for (const auto& [pid, proc] : img.processes) {
    if (proc.core.zombie()) continue;
    for (const image::CgroupPath& c : proc.core.cgroups()) {
      if (!work[c.hierarchy()]) continue;
      auto dir = make(c, "pid " + std::to_string(pid) + ", cgroup hierarchy " + HierarchyName(c.hierarchy()));
      if (!dir.ok()) return dir.status();
      p->files_[pid].push_back(*dir + "/cgroup.procs");
    }
  }
  for (const image::CgroupPath& c : img.namespaces.cgroup().roots()) {
    if (!work[c.hierarchy()]) continue;
    auto dir = make(c, "the root of the tree's cgroup namespace, hierarchy " + HierarchyName(c.hierarchy()));
    if (!dir.ok()) return dir.status();
    p->ns_root_files_.push_back(*dir + "/cgroup.procs");
  }
  LOG_DEBUG("cgroups placed (%zu made, %d with settings) in %.2f ms", p->created_.size(),
            img.namespaces.cgroup_settings_size(), (Now() - t0) * 1e3);
  return p;
}

Status CgroupPlacement::MakeDir(const std::string& dir, const std::string& hierarchy) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::Error(dir + " is not a cgroup directory");
    return Status::Ok();
  }
  if (errno != ENOENT) return Status::FromErrno("stat " + dir);
  CRYO_RETURN_IF_ERROR(MakeDir(Parent(dir), hierarchy));
  // Told first: if cryo dies from here on, the janitor removes it.
  if (Janitor* j = CurrentJanitor()) CRYO_RETURN_IF_ERROR(j->WillCreateCgroup(dir).Prefixed("cgroup " + dir));
  if (::mkdir(dir.c_str(), 0755) != 0) return Status::FromErrno("creating cgroup " + dir);
  created_.push_back(dir);
  LOG_DEBUG("created cgroup %s", dir.c_str());
  if (IsCpuset(hierarchy)) {
    // A new v1 cpuset has no CPUs and no memory nodes: nothing can join it.
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
      CRYO_ASSIGN_OR_RETURN(std::string v, ReadFileToString(Parent(dir) + "/" + f));
      if (!Trim(v).empty()) CRYO_RETURN_IF_ERROR(WriteToFile(dir + "/" + f, Trim(v)));
    }
  }
  // Its limits, before its children are made and any process joins it.
  if (auto s = settings_.find(dir); s != settings_.end()) CRYO_RETURN_IF_ERROR(ApplySettings(dir, *s->second));
  return Status::Ok();
}

const std::vector<std::string>& CgroupPlacement::ProcsFiles(pid_t pid) const {
  static const std::vector<std::string> kNone;
  auto it = files_.find(pid);
  return it == files_.end() ? kNone : it->second;
}

CgroupPlacement::~CgroupPlacement() {
  if (keep_) return;
  // Deepest first. A killed process leaves its cgroup a moment after its
  // death is reported: retry a busy directory for a bounded time.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    const double deadline = Now() + 2;
    int err = 0;
    while (::rmdir(it->c_str()) != 0) {
      err = errno;
      if (err != EBUSY || Now() > deadline) break;
      ::usleep(2000);
    }
    if (err && err != EBUSY && err != ENOENT) LOG_WARN("could not remove cgroup %s it created: %s", it->c_str(), strerror(err));
    if (err == EBUSY) LOG_WARN("could not remove cgroup %s it created: still busy", it->c_str());
  }
}

Status JoinCgroups(const std::vector<std::string>& procs_files) {
  for (const std::string& f : procs_files)
    CRYO_RETURN_IF_ERROR(WriteToFile(f, "0").Prefixed("joining cgroup " + Parent(f)));
  return Status::Ok();
}

}  // namespace cryo::cgroup
