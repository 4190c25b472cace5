#include "seize/seize.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {
constexpr uint64_t kPfKthread = 0x00200000;

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }
std::string Tid(pid_t tid) { return "task " + std::to_string(tid); }

bool IsStopSignal(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

int32_t Signo(const std::vector<uint8_t>& info) {
  int32_t signo;
  std::memcpy(&signo, info.data(), sizeof(signo));
  return signo;
}

// Names who traces `tid` (PTRACE_SEIZE failed with EPERM), or an empty string.
std::string TracedBy(pid_t pid, pid_t tid) {
  auto st = proc::ReadStatus(tid);
  if (!st.ok() || st->tracer_pid == 0) return "";
  auto tracer = proc::ReadStatus(st->tracer_pid);
  const std::string who = (tid == pid ? Pid(pid) : Tid(tid) + " of " + Pid(pid));
  return who + " is traced by pid " + std::to_string(st->tracer_pid) +
         (tracer.ok() ? " (" + tracer->name + ")" : std::string()) +
         "; detach it first (cryo cannot seize a traced process, nor restore a ptrace relationship)";
}
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
  if (st->pid != pid) return Status::Error(Pid(pid) + " is a thread, not a process; give its thread-group id");
  // By the flag, not the number: pid 2 is kthreadd only in the initial PID
  // namespace; in another one it is the first process after its init.
  if (st->flags & kPfKthread)
    return Status::Error(Pid(pid) + " (" + st->comm + ") is a kernel thread");
  if (st->state == 'Z') return Status::Error(Pid(pid) + " (" + st->comm + ") is a zombie");
  return Status::Ok();
}

Status SeizedProcess::SeizeThread(pid_t tid) {
  if (ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(kSeizeOptions)) != 0) {
    if (errno == ESRCH) return Status::Ok();  // exited meanwhile
    if (errno == EPERM) {
      // Created by a seized task: already ours through PTRACE_O_TRACECLONE/
      // TRACEFORK, and it starts in a PTRACE_EVENT_STOP of its own.
      auto st = proc::ReadStatus(tid);
      if (st.ok() && st->tracer_pid == getpid()) {
        SeizedTask t;
        t.tid = tid;
        threads_.push_back(t);
        return Status::Ok();
      }
      errno = EPERM;
    }
    if (errno == EPERM) {
      const std::string traced = TracedBy(pid_, tid);
      if (!traced.empty()) return Status::Error(traced);
      errno = EPERM;
      return Status::FromErrno("PTRACE_SEIZE " + Tid(tid) + " (not permitted)");
    }
    return Status::FromErrno("PTRACE_SEIZE " + Tid(tid));
  }
  SeizedTask t;
  t.tid = tid;
  threads_.push_back(t);
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH)
    return Status::FromErrno("PTRACE_INTERRUPT " + Tid(tid));
  return Status::Ok();
}

// Waits for the interrupt stop of one thread. A stop signal dequeued meanwhile
// into a signal-delivery-stop is kept (with its siginfo); any other signal is
// delivered now (its handler is entered before the interrupt stop), as it
// would have been without cryo: a signal cryo held back would be lost if cryo
// died. A clone event lets the parent go on to its interrupt stop (the child
// is auto-attached).
Status SeizedProcess::WaitInterrupted(SeizedTask& t) {
  for (int i = 0; i < 256; ++i) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(t.tid));
    if (si.exited) return Status::Errno(ESRCH, Tid(t.tid) + " exited while being seized");
    if (si.event_stop()) {
      // A seized task reports the signal of a group-stop in effect or in
      // progress in its PTRACE_EVENT_STOP, SIGTRAP otherwise (do_jobctl_trap).
      if (IsStopSignal(si.stopsig)) t.group_stop = si.stopsig;
      return Status::Ok();
    }
    long deliver = 0;
    if (si.signal_delivery_stop() && !IsStopSignal(si.stopsig)) {
      LOG_DEBUG("%s: signal %d delivered while seizing", Tid(t.tid).c_str(), si.stopsig);
      deliver = si.stopsig;
    } else if (si.signal_delivery_stop()) {
      std::vector<uint8_t> info(128);
      if (ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, info.data()) != 0) return Status::FromErrno("PTRACE_GETSIGINFO " + Tid(t.tid));
      LOG_DEBUG("%s: intercepted signal %d while seizing", Tid(t.tid).c_str(), si.stopsig);
      t.intercepted.push_back(std::move(info));
    }
    if (ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT " + Tid(t.tid));
    if (ptrace(PTRACE_CONT, t.tid, nullptr, reinterpret_cast<void*>(deliver)) != 0)
      return Status::FromErrno("PTRACE_CONT " + Tid(t.tid));
  }
  return Status::Error(Tid(t.tid) + " did not stop");
}

Result<std::unique_ptr<SeizedProcess>> SeizedProcess::Seize(pid_t pid) {
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  std::unique_ptr<SeizedProcess> sp(new SeizedProcess(pid));
  // The leader first (it must be threads_[0]); if it cannot be seized nothing is.
  CRYO_RETURN_IF_ERROR(sp->SeizeThread(pid));
  if (sp->threads_.empty()) return Status::Error(Pid(pid) + " exited while being seized");
  // Re-read the thread list until every thread in it is seized: a thread
  // created before its parent stopped is found here, one created after is
  // auto-attached through PTRACE_O_TRACECLONE and appears in the list too.
  for (int round = 0;; ++round) {
    CRYO_ASSIGN_OR_RETURN(std::vector<pid_t> tids, proc::ListThreads(pid));
    bool added = false;
    for (pid_t tid : tids) {
      if (std::any_of(sp->threads_.begin(), sp->threads_.end(), [tid](const SeizedTask& t) { return t.tid == tid; }))
        continue;
      CRYO_RETURN_IF_ERROR(sp->SeizeThread(tid));
      added = true;
    }
    if (!added) break;
    if (round > 100) return Status::Error(Pid(pid) + " keeps creating threads; cannot freeze it");
  }
  for (size_t i = 0; i < sp->threads_.size();) {
    Status s = sp->WaitInterrupted(sp->threads_[i]);
    if (!s.ok() && s.err() == ESRCH && i > 0) {
      sp->threads_.erase(sp->threads_.begin() + static_cast<long>(i));
      continue;
    }
    CRYO_RETURN_IF_ERROR(s);
    ++i;
  }
  // Auto-attached threads report their own stop: collect any we have not seen.
  CRYO_ASSIGN_OR_RETURN(std::vector<pid_t> tids, proc::ListThreads(pid));
  if (tids.size() != sp->threads_.size())
    return Status::Error(Pid(pid) + ": threads appeared while freezing (" + std::to_string(tids.size()) + " vs " +
                         std::to_string(sp->threads_.size()) + "); try again");
  for (SeizedTask& t : sp->threads_) {
    CRYO_RETURN_IF_ERROR(GetRegs(t.tid, &t.regs));
    CRYO_ASSIGN_OR_RETURN(t.sigmask, GetSigmask(t.tid));
    CRYO_ASSIGN_OR_RETURN(t.xsave, GetXstate(t.tid, XsaveSize()));
  }
  return sp;
}

int SeizedProcess::group_stop() const {
  for (const SeizedTask& t : threads_)
    if (t.group_stop) return t.group_stop;
  return 0;
}

int SeizedProcess::pending_stop() const {
  if (dequeued_stop_) return SIGSTOP;
  for (const SeizedTask& t : threads_)
    for (const auto& info : t.intercepted)
      if (Signo(info) == SIGSTOP) return SIGSTOP;
  return 0;
}

SeizedProcess::~SeizedProcess() {
  if (!released_) {
    Status s = Detach();
    if (!s.ok()) LOG_ERROR("detaching %s: %s", Pid(pid_).c_str(), s.ToString().c_str());
  }
}

Status SeizedProcess::Detach() {
  released_ = true;
  Status first;
  // A SIGSTOP cryo dequeued is queued again while every thread is still
  // traced (no thread takes it then: wants_signal); each thread finds it on
  // its way out of the ptrace stop, before any user code runs. A group-stop
  // in effect needs nothing: the detach re-enters it.
  if (!group_stop() && pending_stop() && ::kill(pid_, SIGSTOP) != 0)
    first = Status::FromErrno("queueing the SIGSTOP of " + Pid(pid_) + " again");
  for (SeizedTask& t : threads_) {
    // The registers may have been used for remote system calls: put them back,
    // applying the syscall-restart rewrite the kernel would have made had the
    // task left its interrupt stop (we leave from a syscall-exit stop instead).
    user_regs_struct regs = t.regs;
    user_regs_struct now;
    Status s = GetRegs(t.tid, &now);
    if (s.ok() && std::memcmp(&now, &regs, sizeof(regs)) != 0) {
      ApplySyscallRestart(&regs);
      s = SetRegs(t.tid, regs);
    }
    Status m = SetSigmask(t.tid, t.sigmask);
    int sig = 0;
    for (const auto& info : t.intercepted)
      if (Signo(info) != SIGSTOP) {
        sig = Signo(info);  // delivered again by the detach itself
        break;
      }
    if (ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0 && first.ok())
      first = Status::FromErrno("PTRACE_DETACH " + Tid(t.tid));
    if (first.ok() && !s.ok()) first = s;
    if (first.ok() && !m.ok()) first = m;
  }
  return first;
}

Status SeizedProcess::Kill() {
  released_ = true;
  if (::kill(pid_, SIGKILL) != 0) return Status::FromErrno("kill " + Pid(pid_));
  // Every traced thread reports its death; the leader's comes last.
  for (auto it = threads_.rbegin(); it != threads_.rend(); ++it) {
    for (;;) {
      auto si = WaitStop(it->tid);
      if (!si.ok() || si->exited) break;
    }
  }
  return Status::Ok();
}

}  // namespace cryo
