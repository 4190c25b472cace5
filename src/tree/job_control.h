// Job-control state of a process: stopped by SIGSTOP, SIGTSTP, SIGTTIN or
// SIGTTOU (a group-stop, signal(7)), or about to be (a SIGSTOP dequeued while
// cryo held it). Recorded as ProcessCore.stop_signal; at restore the process
// is stopped again with that signal at the release, before any of its threads
// runs user code, so a SIGCONT resumes it.
//
// What the parent observes: the restored stop is a new group-stop, so the
// parent gets a CLD_STOPPED SIGCHLD and waitpid(WUNTRACED) reports the stop
// once more, whether or not the original parent had already consumed that
// report (nothing in /proc says). A repeated report is harmless to a parent
// that waits for stops (a shell marks the job stopped again); a missing one
// would leave a parent that had not waited yet blocked forever.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "seize/seize.h"

namespace cryo {

// Sets core->stop_signal from what the seize and the remote calls saw, and
// takes every pending SIGSTOP out of the recorded signal queues (it is not a
// signal to deliver later but the stop itself: queued in the restorer, it
// would stop the blob half-way).
void RecordJobControl(const SeizedProcess& sp, image::ProcessCore* core);

// The image's stop signal is one of the four (or 0).
Status ValidateJobControl(const image::ProcessCore& core);

// At the release (every thread still traced, registers loaded): queues the
// process's stop signal, so that each thread enters the group-stop on its way
// out of the ptrace stop. SIGTSTP, SIGTTIN and SIGTTOU are discarded by the
// kernel in an orphaned process group and by a handler or a mask (the original
// was stopped by the default action); then SIGSTOP is used, with a warning (a
// waitpid(WUNTRACED) in the parent reports SIGSTOP).
Status StopAtRelease(const image::ProcessCore& core, std::vector<std::string>* warnings);

// Whether process group `pgid` is orphaned (POSIX): no member has a parent in
// another group of the same session (will_become_orphaned_pgrp). From /proc.
Result<bool> ProcessGroupOrphaned(pid_t pgid);

}  // namespace cryo
