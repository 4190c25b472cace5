#include "tree/job_control.h"

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "proc/proc.h"

namespace cryo {

namespace {

bool IsStopSignal(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// Removes the SIGSTOPs from one recorded queue; true if there was one.
bool TakeSigstops(google::protobuf::RepeatedPtrField<image::SigInfo>* q) {
  const int before = q->size();
  auto is_stop = [](const image::SigInfo& si) {
    int32_t signo = 0;
    if (si.raw().size() >= sizeof(signo)) std::memcpy(&signo, si.raw().data(), sizeof(signo));
    return signo == SIGSTOP;
  };
  q->erase(std::remove_if(q->begin(), q->end(), is_stop), q->end());
  return q->size() != before;
}

// The default action of `sig` stops the process: it has no handler and is not
// ignored in the image.
bool DefaultAction(const image::ProcessCore& core, int sig) {
  for (const image::SigAction& a : core.actions())
    if (static_cast<int>(a.sig()) == sig) return a.handler() == 0;
  return true;
}

bool SomeThreadTakes(const image::ProcessCore& core, int sig) {
  for (const image::TaskCore& t : core.threads())
    if (!(t.blocked() >> (sig - 1) & 1)) return true;
  return false;
}

}  // namespace

void RecordJobControl(const SeizedProcess& sp, image::ProcessCore* core) {
  bool queued = TakeSigstops(core->mutable_shared_pending());
  for (image::TaskCore& t : *core->mutable_threads()) queued |= TakeSigstops(t.mutable_pending());
  int sig = sp.group_stop();
  if (!sig) sig = sp.pending_stop();
  if (!sig && queued) sig = SIGSTOP;
  core->set_stop_signal(sig);
}

Status ValidateJobControl(const image::ProcessCore& core) {
  if (core.stop_signal() != 0 && !IsStopSignal(core.stop_signal()))
    return Status::Error("pid " + std::to_string(core.pid()) + ": stop signal " + std::to_string(core.stop_signal()) +
                         " is not a job-control stop signal (corrupted)");
  return Status::Ok();
}

Result<bool> ProcessGroupOrphaned(pid_t pgid) {
  // Every process of the group (cryo too: a restored tree may be in its group).
  std::vector<proc::Stat> members;
  CRYO_RETURN_IF_ERROR(proc::ForEachPid([&](pid_t pid) {
    auto st = proc::ReadStat(pid);
    if (st.ok() && st->pgrp == pgid && st->state != 'Z' && st->state != 'X') members.push_back(*st);
    return Status::Ok();
  }));
  for (const proc::Stat& m : members) {
    if (m.ppid <= 1) continue;  // init's children do not count (is_global_init)
    auto parent = proc::ReadStat(m.ppid);
    if (parent.ok() && parent->pgrp != pgid && parent->session == m.session) return false;
  }
  return true;
}

Status StopAtRelease(const image::ProcessCore& core, std::vector<std::string>* warnings) {
  int sig = core.stop_signal();
  if (!sig) return Status::Ok();
  const std::string who = "pid " + std::to_string(core.pid());
  if (sig != SIGSTOP) {
    // get_signal() discards SIGTSTP, SIGTTIN and SIGTTOU in an orphaned group
    // (is_current_pgrp_orphaned); a handler or a mask would keep it from
    // stopping the process at all.
    std::string why;
    CRYO_ASSIGN_OR_RETURN(bool orphaned, ProcessGroupOrphaned(core.pgid()));
    if (orphaned)
      why = "its process group " + std::to_string(core.pgid()) + " is orphaned here, where the kernel discards " +
            strsignal(sig);
    else if (!DefaultAction(core, sig))
      why = "the signal has a handler or is ignored";
    else if (!SomeThreadTakes(core, sig))
      why = "every thread blocks it";
    if (!why.empty()) {
      warnings->push_back(who + " was stopped by signal " + std::to_string(sig) + " and is stopped again by SIGSTOP (" +
                          why + "); its parent's waitpid(WUNTRACED) reports SIGSTOP");
      sig = SIGSTOP;
    }
  }
  // Every thread is still traced, so no thread takes it now (wants_signal);
  // each finds it on its way out of the ptrace stop at the detach, before it
  // runs any user code, and the first one starts the group-stop.
  if (::kill(core.pid(), sig) != 0) return Status::FromErrno("stopping restored " + who + " again");
  return Status::Ok();
}

}  // namespace cryo
