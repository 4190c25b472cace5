// cgroup membership, restore half. Before anything is cloned, cryo works out
// each process's cgroup in every hierarchy its record names: the base (cryo's
// own cgroup there, or --cgroup-root) joined with the recorded relative path.
// It creates the directories that are missing (for a v1 cpuset, with its
// parent's cpus and mems, without which no task can join it) and removes them
// again if the restore fails. Each restore helper then moves itself there
// (writes 0 to cgroup.procs), first thing, before it maps memory (charged to
// the cgroup it is in) and clones its children (born in its cgroups).
// A hierarchy in which every process was in cryo's cgroup needs nothing: the
// processes inherit cryo's. The controller settings recorded for the cgroups
// (cgroup_settings.h) are checked against those that exist and written to
// those it creates, right after each mkdir.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo::cgroup {

// --cgroup-root values: "PATH" (every hierarchy) or "HIERARCHY:PATH" (v1
// controllers as in /proc/PID/cgroup, e.g. "memory" or "name=systemd";
// "cgroup2" for the v2 hierarchy). PATH is absolute, as /proc/self/cgroup
// shows cgroups.
struct CgroupRoots {
  std::string all;
  std::map<std::string, std::string> by_hierarchy;
};
Result<CgroupRoots> ParseCgroupRoots(const std::vector<std::string>& options);

class CgroupPlacement {
 public:
  static Result<std::unique_ptr<CgroupPlacement>> Prepare(const image::LoadedImage& img, const CgroupRoots& roots);
  ~CgroupPlacement();  // removes the directories it created, unless Keep() was called
  CgroupPlacement(const CgroupPlacement&) = delete;
  CgroupPlacement& operator=(const CgroupPlacement&) = delete;

  // The cgroup.procs files process `pid` writes itself into (empty: none).
  const std::vector<std::string>& ProcsFiles(pid_t pid) const;
  // Those of the root of the tree's cgroup namespace (NamespaceTable.cgroup,
  // ns/cgroup_ns.h), which the root's helper unshares in (empty: none).
  const std::vector<std::string>& NsRootProcsFiles() const { return ns_root_files_; }
  void Keep() { keep_ = true; }

 private:
  CgroupPlacement() = default;
  Status MakeDir(const std::string& dir, const std::string& hierarchy);
  std::vector<std::string> created_;  // in creation order
  std::map<pid_t, std::vector<std::string>> files_;
  std::vector<std::string> ns_root_files_;
  // Directory -> the settings written when cryo makes it (cgroup_settings.h).
  std::map<std::string, const image::CgroupSettings*> settings_;
  bool keep_ = false;
};

// In the restore helper: moves the calling process into each cgroup.
Status JoinCgroups(const std::vector<std::string>& procs_files);

}  // namespace cryo::cgroup
