// Interrupting cryo. SIGINT, SIGTERM, SIGHUP and SIGPIPE only set a flag
// (CatchInterrupts); the dump checks it between its steps (CheckInterrupt) and
// stops where it can undo what it did: the remote call in flight finishes,
// every task gets its registers, mask and memory back and is detached, and
// the partial image is removed.
//
// Also the fault-injection hook of the tests: with CRYO_FAULT_POINT=N in the
// environment, the Nth FaultPoint() (every ptrace request, remote system call
// and step of a dump passes one) raises CRYO_FAULT_SIGNAL (KILL, INT, TERM,
// HUP or PIPE; default KILL) on cryo itself. CRYO_FAULT_POINT=0 only counts
// (FaultPointsPassed). Without the variable a fault point is one load and a
// branch.
#pragma once

#include <cstdint>

#include "base/status.h"

namespace cryo {

// Installs the flag-setting handlers (SA_RESTART: system calls in progress go on).
void CatchInterrupts();
// The signal that interrupted cryo, 0 if none came.
int InterruptSignal();
// A fault point, then: an error naming the signal once one came.
Status CheckInterrupt();

// Reads CRYO_FAULT_POINT and CRYO_FAULT_SIGNAL (once, at start).
void InitFaultPoints();
uint64_t FaultPointsPassed();
// In a child that must finish its work whatever happens to cryo.
void DisarmFaultPoints();

namespace internal {
extern bool g_fault_points_armed;
void PassFaultPoint();
}  // namespace internal

inline void FaultPoint() {
  if (__builtin_expect(internal::g_fault_points_armed, false)) internal::PassFaultPoint();
}

}  // namespace cryo
