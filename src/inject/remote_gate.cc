// The gate: a thread of a process cryo works in held in a sleep of cryo's
// injected code (InjectedCode::kGate) until cryo opens it, so that it cannot
// run its own code meanwhile and, cryo gone, goes back by itself.
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include "base/interrupt.h"
#include "inject/injected_code.h"
#include "inject/remote_process.h"
#include "inject/remote_syscall.h"
#include "seize/ptrace_util.h"

namespace cryo {

Result<uint64_t> RemoteSyscaller::PrepareGate() {
  CRYO_RETURN_IF_ERROR(WholeCode("a gate"));
  return proc_->code.base() + InjectedCode::kGateFlag;
}

Status RemoteSyscaller::OpenGate() {
  if (!guarded()) return Status::Ok();
  return proc_->code.OpenGate();
}

// The thread runs to the entry of the gate's first sleep (the flag is 0),
// where it stays: cryo gone, it would sleep, look at the flag again, ...
Status RemoteSyscaller::Hold(uint64_t rounds) {
  if (loop_running_ || held_) return Status::Error("internal: holding " + Tid(tid_) + " during a call");
  CRYO_ASSIGN_OR_RETURN(const uint64_t flag, PrepareGate());
  CRYO_RETURN_IF_ERROR(Enter());
  CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_ppoll, {0, 0, flag - InjectedCode::kGateFlag + InjectedCode::kGateTimespec, 0, 0}, true));
  user_regs_struct r = base_;
  r.rip = flag - InjectedCode::kGateFlag + InjectedCode::kGate;
  r.r12 = rounds;
  r.r15 = Finisher();
  CRYO_RETURN_IF_ERROR(Inject(r, PTRACE_SYSCALL));
  held_ = true;
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died on its way to cryo's gate");
    if (si.syscall_stop()) return Status::Ok();
    CRYO_RETURN_IF_ERROR(OnOtherStop(si, "the way to cryo's gate"));
    FaultPoint();
    if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  }
}

// At the entry stop: the sleep skipped (orig_rax -1), then its exit stop.
Status RemoteSyscaller::Unhold() {
  if (!held_) return Status::Ok();
  held_ = false;
  user_regs_struct r;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &r));
  r.orig_rax = static_cast<unsigned long long>(-1);
  CRYO_RETURN_IF_ERROR(SetRegs(tid_, r));
  FaultPoint();
  if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died leaving cryo's gate");
    if (si.syscall_stop()) break;
    CRYO_RETURN_IF_ERROR(OnOtherStop(si, "leaving cryo's gate"));
    if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  }
  return owner_ ? Park() : Status::Ok();
}

}  // namespace cryo
