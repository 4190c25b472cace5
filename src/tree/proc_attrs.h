// Per-process and per-thread attributes the kernel keeps outside the address
// space, files and signals: the audit loginuid and session id, oom_score_adj,
// coredump_filter, the session's autogroup nice value (/proc/PID/...), and
// each thread's CPU affinity, I/O priority and scheduling attributes.
//
// Who sets what at restore, and why there:
//  - loginuid: only a task can write its own (proc_loginuid_write), and a set
//    loginuid needs CAP_AUDIT_CONTROL to change: the restore helper, first
//    thing, before it clones its children (they inherit it with the session
//    id) and long before the credential switch;
//  - oom_score_adj, coredump_filter, autogroup: the helper, as root, before
//    the blob (oom_score_adj: lowering it below the oom_score_adj_min it
//    inherited from cryo needs CAP_SYS_RESOURCE, oom_adj_write);
//  - affinity, I/O priority, scheduling: cryo, per thread, once every thread
//    exists and has stopped at the end of the blob (threads are created there).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

inline constexpr uint32_t kAuditUnset = 4294967295u;  // AUDIT_UID_UNSET, AUDIT_SID_UNSET

// Dump.
// Refusals before anything is written, for processes `pids` (parents in
// `parent`, 0 for the root): an audit session a restore cannot rebuild (a
// process whose session id is set and differs from its parent's: the kernel
// gives a new id with every loginuid write), an oom_score_adj a process with
// cryo's privileges cannot set (probed in a child of cryo).
Status CheckProcessAttrs(const std::vector<pid_t>& pids, const std::map<pid_t, pid_t>& parent);
Status DumpProcessAttrs(pid_t pid, image::ProcessCore* core);
// Affinity (recorded empty when it holds every CPU online), I/O priority,
// scheduling attributes of one thread.
Status DumpThreadAttrs(pid_t tid, image::TaskCore* t);
// Whether an older cryo, which does not know these attributes (its restored
// processes inherit its own), would restore `core` wrong: some attribute
// differs from cryo's own (or, per thread, from the defaults). Then the image
// lists feature "proc-attrs".
bool NeedsProcAttrsFeature(const image::ProcessCore& core);
// The cpu_set_t of every CPU online now (/sys/devices/system/cpu/online).
Result<std::string> OnlineCpuMask();
// A CPU list ("0-3,8", cpuset(7) format) as a cpu_set_t's bytes.
Result<std::string> CpuListToMask(std::string_view list);
// Whether a child of cryo, with cryo's privileges and oom_score_adj_min, may
// set oom_score_adj `value` (lowering it below oom_score_adj_min needs
// CAP_SYS_RESOURCE, oom_adj_write): a forked probe that tries.
Result<bool> CanSetOomScoreAdj(int value);

// Restore.
// Before anything is created: the root's audit session must be one the
// restore can give it (unset, or cryo's own); values in range.
Status CheckRestoreAttrs(const image::ProcessCore& core, bool is_root);
// In the helper, before it clones anything: its loginuid (the session id
// follows, see CheckRestoreAttrs).
Status ApplyAuditSession(const image::ProcessCore& core);
// In the helper, after its children exist: oom_score_adj, coredump_filter,
// and, for a session leader (`leads_session`), its autogroup's nice value.
Status ApplyProcessAttrs(const image::ProcessCore& core, bool leads_session);
// A temporary session leader (restore_plan.h) gives the rebuilt session the
// autogroup nice value of its members.
Status ApplyAutogroupNice(int nice);
// By cryo, at the final stop: affinity, I/O priority and (if recorded)
// scheduling attributes of one thread.
Status ApplyThreadAttrs(const image::TaskCore& t);

}  // namespace cryo
