// Freezing a process with ptrace: PTRACE_SEIZE + PTRACE_INTERRUPT, so the task is
// stopped without a signal it could observe. While seized, the process can be
// inspected and made to run system calls (inject/); on any error the process is
// detached with its registers, signal mask and memory as they were.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <memory>
#include <vector>

#include "base/status.h"

namespace cryo {

struct SeizedTask {
  pid_t tid = 0;
  user_regs_struct regs{};    // as found when seized
  uint64_t sigmask = 0;       // blocked signals as found
  // Signals dequeued by a signal-delivery-stop while we seized (raw siginfo):
  // they are queued again on detach and recorded as pending in the image.
  std::vector<std::vector<uint8_t>> intercepted;
};

class SeizedProcess {
 public:
  // Seizes a single-threaded process. Refuses a kernel thread, cryo itself and
  // its parent, and (for now) multi-threaded processes, naming the reason.
  static Result<std::unique_ptr<SeizedProcess>> Seize(pid_t pid);
  ~SeizedProcess();  // detaches if neither Detach() nor Kill() was called

  pid_t pid() const { return leader_.tid; }
  SeizedTask& leader() { return leader_; }

  // Restores the found registers and mask and lets the process run on.
  Status Detach();
  // SIGKILL, then waits until the tracee is reported dead.
  Status Kill();

 private:
  explicit SeizedProcess(pid_t pid) { leader_.tid = pid; }
  SeizedTask leader_;
  bool released_ = false;
};

// Checks that `pid` names a process cryo may checkpoint (exists, not a kernel
// thread, not cryo or its parent).
Status CheckDumpable(pid_t pid);

}  // namespace cryo
