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
// calls in the leader (its scratch memory must be mapped).
Status DumpProcessCore(SeizedProcess& proc, RemoteSyscaller& rs, const proc::Stat& stat, const proc::ProcStatus& status,
                       image::ProcessCore* core);

}  // namespace cryo
