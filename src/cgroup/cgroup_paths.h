// cgroup paths: /proc/PID/cgroup (a process's cgroup in each hierarchy),
// where each hierarchy is mounted (/proc/self/mountinfo), and the path
// arithmetic that makes a process's cgroup relative to cryo's own.
//
// A hierarchy is named by its line of /proc/PID/cgroup: the v1 controllers
// ("cpu,cpuacct", "memory", "name=systemd") or "" for the cgroup2 hierarchy
// (the "0::" line). Paths are as /proc shows them: absolute from the root of
// the reader's cgroup namespace.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proc/proc.h"

namespace cryo::cgroup {

struct Membership {
  std::string hierarchy;  // v1 controllers, "" for cgroup2
  std::string path;       // "/a/b"
};

Result<std::vector<Membership>> ParseProcCgroup(std::string_view text);
Result<std::vector<Membership>> ReadProcCgroup(const std::string& file);

// Where `hierarchy`'s cgroup `path` is in cryo's mount namespace: the mount
// of that hierarchy whose root holds the path, with the path below it.
// Error (naming the hierarchy) if none.
Result<std::string> CgroupDir(const std::vector<proc::MountInfo>& mounts, const std::string& hierarchy,
                              const std::string& path);
Result<std::vector<proc::MountInfo>> OwnMounts();

// `path` relative to `base` ("" if equal, "../x" for a sibling).
std::string RelativePath(const std::string& path, const std::string& base);
// base + rel, normalized; an error if ".." climbs above the root.
Result<std::string> JoinPath(const std::string& base, const std::string& rel);

// "" for cgroup2, else the controllers: how `cryo show` and messages name it.
std::string HierarchyName(const std::string& hierarchy);

}  // namespace cryo::cgroup
