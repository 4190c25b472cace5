// Collecting the state of one process and its task: registers, signals, timers,
// credentials, limits, mm fields and the small per-process settings.
#pragma once

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
// unless the process has a child with an exit signal other than SIGCHLD.
Status DumpProcessCore(SeizedProcess& proc, RemoteSyscaller& rs, const proc::Stat& stat, const proc::ProcStatus& status,
                       image::ProcessCore* core, bool* may_trace);

}  // namespace cryo
