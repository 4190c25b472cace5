#include "inject/reclaim.h"

#include <sys/uio.h>

#include <cstring>
#include <string>

#include "base/log.h"
#include "inject/sigframe.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {

constexpr uint64_t kRestartSyscall = 219;
constexpr uint64_t kAfterRestartSyscall = 0x65;

bool Restarting(const user_regs_struct& r) {
  const long rax = static_cast<long>(r.rax);
  return r.orig_rax == kRestartSyscall && rax <= -512 && rax >= -516;  // ERESTARTSYS..ERESTART_RESTARTBLOCK
}

Status ReadTask(pid_t tid, uint64_t addr, void* out, size_t n) {
  struct iovec local = {out, n};
  struct iovec remote = {reinterpret_cast<void*>(addr), n};
  if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(n))
    return Status::FromErrno("reading the signal frame of task " + std::to_string(tid));
  return Status::Ok();
}

Status Reclaim(SeizedTask& t, const InjectedCode::Place& at) {
  const uint64_t frame = at.after_push ? t.regs.rsp : t.regs.rsp - 8;
  char head[kSigFrameHead];
  CRYO_RETURN_IF_ERROR(ReadTask(t.tid, frame, head, sizeof(head)));
  auto parsed = ParseSigFrame(head, t.regs);
  if (!parsed.ok())
    return parsed.status().Prefixed("task " + std::to_string(t.tid) + " runs cryo's code (left by a killed cryo)");
  user_regs_struct r = parsed->regs;
  r.orig_rax = static_cast<unsigned long long>(-1);
  if (parsed->note.restart && !at.boot) {
    // Not through "restart" yet (the call, the loop, unmap_result), or in it.
    const bool before = at.offset < kAfterRestartSyscall || at.offset >= InjectedCode::kUnmapResult;
    if (before || (at.offset == kAfterRestartSyscall && Restarting(t.regs))) {
      // Still in the interrupted call: as the kernel left it the first time.
      r.orig_rax = parsed->note.orig_rax;
      r.rax = static_cast<unsigned long long>(-516);  // ERESTART_RESTARTBLOCK
    } else if (at.offset == kAfterRestartSyscall) {
      r.rax = t.regs.rax;  // its result, not stored in the frame yet
    }
  }
  LOG_INFO("task %d was finishing a remote call of a killed cryo (code offset %#llx): taken back to its own state",
           t.tid, static_cast<unsigned long long>(at.offset));
  CRYO_RETURN_IF_ERROR(SetRegs(t.tid, r));
  CRYO_RETURN_IF_ERROR(SetSigmask(t.tid, parsed->blocked));
  t.regs = r;
  t.sigmask = parsed->blocked;
  return Status::Ok();
}

}  // namespace

Status ReclaimTasks(SeizedProcess& sp, const InjectedCode& code) {
  for (SeizedTask& t : sp.threads()) {
    CRYO_ASSIGN_OR_RETURN(auto at, code.Locate(t.tid, t.regs.rip));
    if (at.inside) CRYO_RETURN_IF_ERROR(Reclaim(t, at));
  }
  return Status::Ok();
}

}  // namespace cryo
