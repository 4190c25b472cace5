// Freezing a process with ptrace: PTRACE_SEIZE + PTRACE_INTERRUPT on every
// thread, so no task is stopped by a signal it could observe. New threads are
// caught by PTRACE_O_TRACECLONE and the thread list is re-read until it is
// stable. While seized, the process can be inspected and made to run system
// calls (inject/); on any error every thread is detached with its registers
// and signal mask as they were.
#pragma once

#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

// The ptrace options of a seized task. TRACEFORK/VFORK/CLONE: a task created
// by a seized one is ours from birth.
inline constexpr long kSeizeOptions =
    PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;

struct SeizedTask {
  pid_t tid = 0;
  user_regs_struct regs{};    // as found when seized
  uint64_t sigmask = 0;       // blocked signals as found
  std::string xsave;          // FPU/vector state as found (PTRACE_GETREGSET NT_X86_XSTATE)
  // Signals dequeued by a signal-delivery-stop while we seized (raw siginfo):
  // recorded as pending in the image, and delivered again on detach. A
  // SIGSTOP among them is not a pending signal but a stop about to happen
  // (SeizedProcess::pending_stop()).
  std::vector<std::vector<uint8_t>> intercepted;
  // The stop signal of the group-stop its PTRACE_EVENT_STOP reported
  // (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU): the process was stopped, or
  // stopping, when seized. 0: the plain interrupt stop (SIGTRAP).
  int group_stop = 0;
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

  // The job-control stop of the process when it was seized: the signal of its
  // group-stop (in effect, or in progress: a thread that had not stopped yet
  // would have), else 0.
  int group_stop() const;
  // A SIGSTOP dequeued while cryo held the process (intercepted at the seize,
  // or during remote system calls: `stop_sink()`), which cryo kept from
  // taking effect: the process is to stop as soon as it runs. 0 or SIGSTOP.
  int pending_stop() const;
  // Where remote system calls in this process report a SIGSTOP they dequeued.
  int* stop_sink() { return &dequeued_stop_; }

  // Restores the found registers and masks and lets every thread run on. A
  // group-stopped process stays stopped (the kernel re-enters the stop on
  // detach, __ptrace_unlink); a pending stop is queued again.
  Status Detach();
  // SIGKILL, then waits until every thread is reported dead.
  Status Kill();

 private:
  explicit SeizedProcess(pid_t pid) : pid_(pid) {}
  Status SeizeThread(pid_t tid);
  Status WaitInterrupted(SeizedTask& t);
  pid_t pid_;
  std::vector<SeizedTask> threads_;
  int dequeued_stop_ = 0;
  bool released_ = false;
};

// Checks that `pid` names a process cryo may checkpoint (exists, not a kernel
// thread, not cryo or its parent, not a zombie).
Status CheckDumpable(pid_t pid);

}  // namespace cryo
