// The restore half of task_dump: settings the restore helper applies itself, and
// the state it hands to the restorer blob (which must set it after the address
// space is in place).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "restorer/restorer_args.h"

namespace cryo {

// umask, cwd, comm, scheduling, timer slack, subreaper (sessions and groups
// are the helper's: they depend on the tree). Non-fatal differences are appended to `warnings`.
Status ApplyProcessSettings(const image::ProcessCore& core, std::vector<std::string>* warnings);
// Last settings, after files are open and memory is premapped: personality,
// rlimits, root directory (unless `set_root` is false: another process sets
// the fs_struct it shares).
Status ApplyLateSettings(const image::ProcessCore& core, std::vector<std::string>* warnings, bool set_root = true);

// Fills the signal, timer, rseq, robust-list, credential and mm parts of the
// blob's arguments, and one ThreadArg per thread besides the leader. Pending
// siginfos go at a->pending_off (room for PendingCount(core) entries of 128
// bytes); thread stacks of `thread_stack` bytes each start at `stacks`.
Status FillTaskArgs(const image::ProcessCore& core, int exe_fd, restorer::Args* a, uint64_t stacks,
                    uint64_t thread_stack);
size_t PendingCount(const image::ProcessCore& core);

// In cryo, before anything is created: the capability sets hold no
// capability this kernel lacks (capset(2) would drop it without a word).
Status CheckCapabilitiesFit(const image::ProcessCore& core);

// The dumpable flag (PR_GET_DUMPABLE) is set at the very end, when every
// thread has switched its credentials (each switch resets it, commit_creds):
// CheckDumpableFlag refuses, before anything is created, a value this system
// cannot give; RestoreDumpableFlag sets it in the stopped process with a remote
// prctl (2, fs.suid_dumpable, comes from the credential switch itself).
Status CheckDumpableFlag(const image::ProcessCore& core);
Status RestoreDumpableFlag(RemoteSyscaller& rs, const image::ProcessCore& core);

}  // namespace cryo
