#include "seize/ptrace_util.h"

#include <errno.h>

#include <cpuid.h>
#include <sched.h>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include <vector>

#include "base/interrupt.h"

namespace cryo {

namespace {
std::string Tid(pid_t tid) { return "task " + std::to_string(tid); }
}  // namespace

Result<StopInfo> WaitStop(pid_t tid, int timeout_ms) {
  FaultPoint();
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int spin = 0;; ++spin) {
    int status = 0;
    pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("waitpid " + Tid(tid));
    }
    if (r == tid) {
      StopInfo si;
      si.status = status;
      if (WIFEXITED(status) || WIFSIGNALED(status)) {
        si.exited = true;
      } else if (WIFSTOPPED(status)) {
        si.stopsig = WSTOPSIG(status);
        si.event = status >> 16;
      }
      return si;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (elapsed_ms > timeout_ms) return Status::Errno(ETIMEDOUT, "waiting for " + Tid(tid) + " to stop");
    // Stops normally arrive within microseconds: spin briefly, then back off.
    if (spin > 50) {
      struct timespec ts = {0, spin > 1000 ? 1000000 : 20000};
      nanosleep(&ts, nullptr);
    } else {
      sched_yield();
    }
  }
}

Status GetRegs(pid_t tid, user_regs_struct* regs) {
  FaultPoint();
  if (ptrace(PTRACE_GETREGS, tid, nullptr, regs) != 0) return Status::FromErrno("PTRACE_GETREGS " + Tid(tid));
  return Status::Ok();
}

Status SetRegs(pid_t tid, const user_regs_struct& regs) {
  FaultPoint();
  if (ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) return Status::FromErrno("PTRACE_SETREGS " + Tid(tid));
  return Status::Ok();
}

Result<std::string> GetXstate(pid_t tid, size_t size) {
  std::string buf(size, '\0');
  struct iovec iov = {buf.data(), buf.size()};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return Status::FromErrno("PTRACE_GETREGSET NT_X86_XSTATE " + Tid(tid));
  buf.resize(iov.iov_len);
  return buf;
}

Status SetXstate(pid_t tid, const std::string& xsave) {
  FaultPoint();
  std::string copy = xsave;
  struct iovec iov = {copy.data(), copy.size()};
  if (ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return Status::FromErrno("PTRACE_SETREGSET NT_X86_XSTATE " + Tid(tid));
  return Status::Ok();
}

Result<uint64_t> GetSigmask(pid_t tid) {
  uint64_t mask = 0;
  if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(mask), &mask) != 0) return Status::FromErrno("PTRACE_GETSIGMASK " + Tid(tid));
  return mask;
}

Status SetSigmask(pid_t tid, uint64_t mask) {
  FaultPoint();
  if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask) != 0) return Status::FromErrno("PTRACE_SETSIGMASK " + Tid(tid));
  return Status::Ok();
}

size_t XsaveSize() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx) || ebx == 0) return 4096;
  return ebx;
}

void ApplySyscallRestartAfterRestore(user_regs_struct* r) {
  if (static_cast<long>(r->orig_rax) >= 0 && static_cast<long>(r->rax) == -516 /*ERESTART_RESTARTBLOCK*/) {
    const long nr = static_cast<long>(r->orig_rax);
    constexpr long kTimerAbstime = 1;
    if (nr == SYS_nanosleep) {  // (req, rem)
      if (r->rsi) r->rdi = r->rsi;
      r->rax = r->orig_rax;
      r->rip -= 2;
    } else if (nr == SYS_clock_nanosleep) {  // (clock, flags, req, rem)
      if (!(r->rsi & kTimerAbstime) && r->r10) r->rdx = r->r10;
      r->rax = r->orig_rax;
      r->rip -= 2;
    } else {
      r->rax = static_cast<unsigned long long>(-EINTR);
    }
    r->orig_rax = static_cast<unsigned long long>(-1);
    return;
  }
  ApplySyscallRestart(r);
}

void ApplySyscallRestart(user_regs_struct* r) {
  if (static_cast<long>(r->orig_rax) < 0) return;
  switch (static_cast<long>(r->rax)) {
    case -512:  // ERESTARTSYS
    case -513:  // ERESTARTNOINTR
    case -514:  // ERESTARTNOHAND
      r->rax = r->orig_rax;
      r->rip -= 2;
      break;
    case -516:  // ERESTART_RESTARTBLOCK
      r->rax = SYS_restart_syscall;
      r->rip -= 2;
      break;
    default:
      break;
  }
  r->orig_rax = static_cast<unsigned long long>(-1);
}

}  // namespace cryo
