#include "seize/seize.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {
constexpr uint64_t kPfKthread = 0x00200000;

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }
}  // namespace

Status CheckDumpable(pid_t pid) {
  if (pid <= 0) return Status::Error("invalid pid " + std::to_string(pid));
  if (pid == getpid()) return Status::Error(Pid(pid) + " is cryo itself");
  if (pid == getppid()) return Status::Error(Pid(pid) + " is cryo's parent (cryo cannot checkpoint the process that runs it)");
  auto st = proc::ReadStat(pid);
  if (!st.ok()) {
    if (st.status().err() == ENOENT) return Status::Error("no process with " + Pid(pid));
    return st.status();
  }
  if ((st->flags & kPfKthread) || pid == 2 || st->ppid == 2)
    return Status::Error(Pid(pid) + " (" + st->comm + ") is a kernel thread");
  if (st->state == 'Z') return Status::Error(Pid(pid) + " (" + st->comm + ") is a zombie");
  if (st->num_threads > 1)
    return Status::Error(Pid(pid) + " (" + st->comm + ") has " + std::to_string(st->num_threads) +
                         " threads; multi-threaded processes are not supported yet");
  return Status::Ok();
}

Result<std::unique_ptr<SeizedProcess>> SeizedProcess::Seize(pid_t pid) {
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  std::unique_ptr<SeizedProcess> sp(new SeizedProcess(pid));
  if (ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) != 0) {
    sp->released_ = true;
    if (errno == EPERM) return Status::FromErrno("PTRACE_SEIZE " + Pid(pid) + " (already traced by another process, or not permitted)");
    return Status::FromErrno("PTRACE_SEIZE " + Pid(pid));
  }
  if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT " + Pid(pid));
  // Until the interrupt is reported, a signal may be dequeued into a
  // signal-delivery-stop: keep its siginfo and continue to the interrupt stop.
  for (int i = 0; i < 64; ++i) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(pid));
    if (si.exited) {
      sp->released_ = true;
      return Status::Error(Pid(pid) + " exited while being seized");
    }
    if (si.event_stop()) break;
    if (si.signal_delivery_stop()) {
      std::vector<uint8_t> info(128);
      if (ptrace(PTRACE_GETSIGINFO, pid, nullptr, info.data()) != 0) return Status::FromErrno("PTRACE_GETSIGINFO " + Pid(pid));
      LOG_DEBUG("pid %d: intercepted signal %d while seizing", pid, si.stopsig);
      sp->leader_.intercepted.push_back(std::move(info));
      if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT " + Pid(pid));
      continue;
    }
    if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT " + Pid(pid));
  }
  // A thread may have been created between the check and the seize.
  auto tasks = proc::ListThreads(pid);
  if (!tasks.ok()) return tasks.status();
  if (tasks->size() != 1) return Status::Error(Pid(pid) + " became multi-threaded; multi-threaded processes are not supported yet");
  CRYO_RETURN_IF_ERROR(GetRegs(pid, &sp->leader_.regs));
  CRYO_ASSIGN_OR_RETURN(sp->leader_.sigmask, GetSigmask(pid));
  return sp;
}

SeizedProcess::~SeizedProcess() {
  if (!released_) {
    Status s = Detach();
    if (!s.ok()) LOG_ERROR("detaching %s: %s", Pid(pid()).c_str(), s.ToString().c_str());
  }
}

Status SeizedProcess::Detach() {
  released_ = true;
  const pid_t pid = leader_.tid;
  // The registers may have been used for remote system calls: put them back
  // (the syscall-restart rewrite is the kernel's, as we leave from a syscall stop).
  user_regs_struct regs = leader_.regs;
  user_regs_struct now;
  Status s = GetRegs(pid, &now);
  if (s.ok() && std::memcmp(&now, &regs, sizeof(regs)) != 0) {
    ApplySyscallRestart(&regs);
    s = SetRegs(pid, regs);
  }
  Status m = SetSigmask(pid, leader_.sigmask);
  int sig = 0;
  if (!leader_.intercepted.empty()) {
    int32_t signo;
    std::memcpy(&signo, leader_.intercepted.front().data(), sizeof(signo));
    sig = signo;  // re-delivered by the detach itself
  }
  if (ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0)
    return Status::FromErrno("PTRACE_DETACH " + Pid(pid));
  if (!s.ok()) return s;
  return m;
}

Status SeizedProcess::Kill() {
  released_ = true;
  const pid_t pid = leader_.tid;
  if (::kill(pid, SIGKILL) != 0) return Status::FromErrno("kill " + Pid(pid));
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(pid));
    if (si.exited) return Status::Ok();
  }
}

}  // namespace cryo
