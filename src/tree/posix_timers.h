// POSIX timers (timer_create(2)) of a process: dumped from /proc/PID/timers
// plus timer_gettime/timer_getoverrun run in the target, and recreated with
// their ids by the restore helper (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"

namespace cryo {

// One entry of /proc/PID/timers:
//   ID: 0
//   signal: 34/0000000012345678      (signo / sigev_value as a pointer)
//   notify: signal/pid.42            (signal|none|thread / pid|tid . N)
//   ClockID: 1
struct ProcTimer {
  int id = 0;
  int signo = 0;
  uint64_t sigev_value = 0;
  int sigev_notify = 0;  // SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, | SIGEV_THREAD_ID
  pid_t notify_pid = 0;  // the process (pid.N) or thread (tid.N) notified
  int clockid = 0;
};
// In increasing id order.
Result<std::vector<ProcTimer>> ParseProcTimers(std::string_view text);

// Whether timer_create(2) can be given the id to use: the kernel has
// PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+) and CRYO_PRETEND_MISSING does not
// name timer-restore-ids.
bool TimerIdsCanBeChosen();
// Without that, a new process gets the ids 0, 1, 2, ... in creation order: an
// error naming `pid` and the ids unless `timers` (increasing ids) are exactly those.
Status CheckTimerIdsWithoutChoice(pid_t pid, const std::vector<ProcTimer>& timers);

// Fills core->posix_timers for a seized process; `rs` runs system calls in it.
// Refuses timers the restore could not give their ids back (see above).
Status DumpPosixTimers(pid_t pid, RemoteSyscaller& rs, image::ProcessCore* core);

// In the restore helper (the process itself, only its leader thread exists):
// creates every timer with its id and arms it with the time that was left.
// Blocks the timers' signals in the helper, so that an expiry before the
// restorer has put the image's signal handlers in place stays pending.
Status RestorePosixTimers(const image::ProcessCore& core);

}  // namespace cryo
