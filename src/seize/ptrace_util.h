// Thin checked wrappers around ptrace(2) and waiting for ptrace stops.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>

#include "base/status.h"

namespace cryo {

// What a waitpid(2) on a traced task reported.
struct StopInfo {
  bool exited = false;    // exited or was killed (status holds the wait status)
  int status = 0;
  int stopsig = 0;        // WSTOPSIG
  int event = 0;          // status >> 16 (PTRACE_EVENT_*)
  bool syscall_stop() const { return stopsig == (0x80 | 5 /*SIGTRAP*/) && event == 0; }
  bool event_stop() const { return event == 0x80 /*PTRACE_EVENT_STOP*/; }
  bool signal_delivery_stop() const { return !exited && event == 0 && stopsig != (0x80 | 5); }
};

// Waits (bounded) for the next state change of a traced task.
Result<StopInfo> WaitStop(pid_t tid, int timeout_ms = 10000);

Status GetRegs(pid_t tid, user_regs_struct* regs);
Status SetRegs(pid_t tid, const user_regs_struct& regs);
Result<std::string> GetXstate(pid_t tid, size_t size_hint);
Status SetXstate(pid_t tid, const std::string& xsave);
Result<uint64_t> GetSigmask(pid_t tid);
Status SetSigmask(pid_t tid, uint64_t mask);

// The size of the xsave area for the features enabled in XCR0 (CPUID 0xD.0:EBX).
size_t XsaveSize();

// ERESTART* handling as the kernel does it on the way back to user space
// (arch/x86/kernel/signal.c): an interrupted system call is rewound to be
// re-issued; ERESTART_RESTARTBLOCK becomes restart_syscall. orig_rax is then
// cleared so the kernel does not apply it a second time.
void ApplySyscallRestart(user_regs_struct* regs);
// The same for a restored thread, whose kernel restart block (restart_syscall(2))
// is gone: a relative nanosleep/clock_nanosleep is issued again for the time
// that was left, which the kernel wrote to `rem` when the sleep was
// interrupted (the whole request if there is no `rem`); an absolute one with
// its own arguments; any other call that needed its restart block returns
// EINTR, as restart_syscall would.
void ApplySyscallRestartAfterRestore(user_regs_struct* regs);

}  // namespace cryo
