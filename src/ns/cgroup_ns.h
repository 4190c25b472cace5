// A cgroup namespace of the tree's own (`unshare --cgroup --fork ...`,
// cgroup_namespaces(7)): its root in each hierarchy is the cgroup its creator
// was in when it unshared, and /proc/PID/cgroup shows the tree's cgroups
// relative to it.
//
// Dump: the root, per hierarchy, is what cryo sees of a process's cgroup
// less what the process sees of it (read by a child of cryo that joined the
// namespace), recorded like a membership, relative to cryo's cgroup. Refused
// by name: processes of the tree in different cgroup namespaces, a process
// outside the tree in it, a process outside the namespace's root.
//
// Restore: the root's helper moves itself into the namespace's root cgroups
// (cgroup::CgroupPlacement makes them), unshares a fresh cgroup namespace
// there (in the tree's user namespace if it has one, ns/user_ns.h), then
// moves to its own cgroups; every other process is cloned into it.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// Before anything is written: the cgroup namespace the live processes
// `pids` share, if it is not cryo's, read into `out` (feature "cgroup-ns").
Status DumpCgroupNamespace(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                           std::set<std::string>* features);

// `cryo_view` with the suffix `inside_view` taken off: the cgroup path (as
// cryo sees it) of the namespace root under which a process's cgroup reads
// `inside_view`; an error if they do not fit (a process outside its root).
Result<std::string> CgroupNsRoot(const std::string& cryo_view, const std::string& inside_view);

// In the restore helper of the tree's root, first thing: after it moved into
// `root_procs_files` (the namespace root's cgroup.procs files), a fresh cgroup
// namespace for it and every process it clones. Nothing without "cgroup-ns".
Status EnterFreshCgroupNamespace(const image::Inventory& inv, const std::vector<std::string>& root_procs_files);

}  // namespace cryo::ns
