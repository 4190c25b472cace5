// cgroup controller settings (limits), dump and restore side by side.
//
// Recorded for every cgroup a restore may create: each cgroup the tree's
// processes are in that is not cryo's own, and its ancestors below the point
// where its path leaves cryo's cgroup ("a" and "a/b" for "a/b"; "../x" and
// "../x/y" for "../x/y"). The files are a fixed list per cgroup version
// (cgroup_settings.cc: what container engines set: memory, pids, cpu, cpuset,
// io/blkio, hugetlb, net_cls, misc, v2 cgroup.max.*, cgroup.subtree_control),
// read whole; later additions (v1 cpuset flags, memory.kmem.tcp limit,
// notify_on_release, clone_children; v2 cgroup.pressure, io.prio.class) only
// when not at a fresh cgroup's value (feature "cgroup-more-settings"). State
// cryo does not restore is refused at dump by name: a frozen cgroup, v1
// device rules other than the parent's, v1 oom_kill_disable, exclusive
// cpusets, a v1 kmem limit, move_charge_at_immigrate, use_hierarchy 0, a
// net_prio map other than the parent's, rdma limits, a v2 cgroup that is not
// a domain; and any writable file cryo does not know that reads otherwise
// than in the parent cgroup. What is neither (counters, actions, notification
// files, membership) is listed in cgroup_settings.cc with the reason.
//
// At restore, before anything is created, a recorded cgroup that exists must
// read the same values (else refused: pass --cgroup-root or remove it); one
// cryo creates gets the values written right after its mkdir, so before its
// children are made and before any process joins it, in the list's order
// (cpuset.mems and cpus first; v1 memory.limit_in_bytes before memsw; cpu
// period before quota), and read back.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cgroup/cgroup_dump.h"
#include "cryo/image.pb.h"

namespace cryo::cgroup {

// Dump: the settings of the cgroups `records` may make a restore create;
// feature "cgroup-settings" when there are any.
Status DumpCgroupSettings(const CgroupRecords& records, image::NamespaceTable* out, std::set<std::string>* features);

// The settings files of cgroup directory `dir` in `hierarchy` ("" for
// cgroup2), or the refusal of a setting that is not restored (`who` names
// the cgroup in it). `parent` is dir's parent directory.
Result<std::vector<image::CgroupSetting>> ReadSettings(const std::string& dir, const std::string& parent,
                                                       const std::string& hierarchy, const std::string& who);

// Whether `name` is a file of the list for `hierarchy` (an image naming any
// other file is refused: the restore writes only those).
bool KnownSetting(const std::string& hierarchy, const std::string& name);

// Restore: an existing cgroup must read `s`'s values.
Status CheckExistingSettings(const std::string& dir, const image::CgroupSettings& s);
// Restore: writes `s`'s values to the cgroup cryo just created at `dir`
// (only those that differ from what it reads), then reads them back.
Status ApplySettings(const std::string& dir, const image::CgroupSettings& s);

}  // namespace cryo::cgroup
