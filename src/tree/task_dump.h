// Collecting the state of one process and its task: registers, signals, timers,
// credentials, limits, mm fields and the small per-process settings.
#pragma once

#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {

// Fills `core` for a seized process, every thread included. `rs` runs system
// calls in the leader (its scratch memory must be mapped). `may_trace` is set
// when the process might trace a task (SeizedTree::CheckNoTracees decides):
// a remote waitid(__WCLONE) that finds a task to wait for, which is a tracee
// unless the process has a child with an exit signal other than SIGCHLD. The
// read-only `extra` calls (registers only, no memory) run in the leader's
// batch too; their raw results (-errno on failure) go to `extra_results`.
Status DumpProcessCore(SeizedProcess& proc, RemoteSyscaller& rs, const proc::Stat& stat, const proc::ProcStatus& status,
                       image::ProcessCore* core, bool* may_trace, const std::vector<RemoteCall>& extra = {},
                       std::vector<long>* extra_results = nullptr);

}  // namespace cryo
