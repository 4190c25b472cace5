// Freezing a process with ptrace: PTRACE_SEIZE + PTRACE_INTERRUPT on every
// thread, so no task is stopped by a signal it could observe. New threads are
// caught by PTRACE_O_TRACECLONE and the thread list is re-read until it is
// stable. While seized, the process can be inspected and made to run system
// calls (inject/); on any error every thread is detached with its registers
// and signal mask as they were.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

struct SeizedTask {
  pid_t tid = 0;
  user_regs_struct regs{};    // as found when seized
  uint64_t sigmask = 0;       // blocked signals as found
  std::string xsave;          // FPU/vector state as found (PTRACE_GETREGSET NT_X86_XSTATE)
  // Signals dequeued by a signal-delivery-stop while we seized (raw siginfo):
  // recorded as pending in the image, and delivered again on detach.
  std::vector<std::vector<uint8_t>> intercepted;
};

class SeizedProcess {
 public:
  // Seizes every thread of a process. Refuses a kernel thread, cryo itself and
  // its parent, naming the reason.
  static Result<std::unique_ptr<SeizedProcess>> Seize(pid_t pid);
  ~SeizedProcess();  // detaches if neither Detach() nor Kill() was called

  pid_t pid() const { return pid_; }
  // threads()[0] is the thread-group leader.
  std::vector<SeizedTask>& threads() { return threads_; }
  SeizedTask& leader() { return threads_.front(); }

  // Restores the found registers and masks and lets every thread run on.
  Status Detach();
  // SIGKILL, then waits until every thread is reported dead.
  Status Kill();

 private:
  explicit SeizedProcess(pid_t pid) : pid_(pid) {}
  Status SeizeThread(pid_t tid);
  Status WaitInterrupted(SeizedTask& t);
  pid_t pid_;
  std::vector<SeizedTask> threads_;
  bool released_ = false;
};

// Checks that `pid` names a process cryo may checkpoint (exists, not a kernel
// thread, not cryo or its parent, not a zombie).
Status CheckDumpable(pid_t pid);

}  // namespace cryo
