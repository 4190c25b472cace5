// System calls run inside a seized task, for state /proc does not show
// (sigactions, sigaltstack, itimers, prctl values).
//
// At dump they survive cryo's death at any instant. When a tracer dies (even
// by SIGKILL) the kernel detaches its tracees (exit_ptrace), and each runs on
// from the registers and with the signal mask the tracer left it. So a task
// never runs cryo's code without a way back to its own state by itself:
//
// - Before its first call, a signal frame (sigframe.h) is written on the
//   task's own stack below its red zone: its own registers (with the
//   syscall restart it was due), signal mask and FPU/vector state.
// - The code (injected_code.h) sits in the padding at the end of the task's
//   vDSO. A call enters it with rsp on the frame and runs `syscall`; cryo
//   stops the task at the exit of that call (PTRACE_SYSCALL) and reads rax.
//   What follows in the code, rt_sigreturn on the frame (first finishing an
//   interrupted sleep if the task was in one), runs only if cryo is gone,
//   and puts back exactly the task's own registers, mask and FPU state.
// - A batch runs a loop of that code over a table of calls in the scratch
//   memory. Its last call raises, on the task itself, a signal the process
//   ignores and the thread does not block: traced, that is a
//   signal-delivery-stop cryo waits for (and suppresses); untraced, the
//   kernel drops it (sig_ignored). No int3: an untraced trap kills the task.
// - At rest between calls a task sits at one of those stops, so it too
//   returns by itself. The signal mask cryo sets (all blocked but that
//   signal) is set after the registers point into the code and put back
//   before they are restored, so the task never runs its own code with
//   cryo's mask.
// - The scratch memory goes too: the thread that owns it waits between calls
//   at a munmap of it followed by the way back, and so does the end of its
//   batches, unless other threads run batches (their tables are in it).
//
// At restore (Unguarded) the tasks die with cryo (PTRACE_O_EXITKILL): calls
// are plain, at a syscall instruction of the restorer blob.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "inject/sigframe.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"
#include "seize/seize.h"

namespace cryo {

// One system call of a batch: number and arguments.
struct RemoteCall {
  long nr = 0;
  uint64_t args[6] = {};
};

struct RemoteProcess;

// What a task's seccomp filters would do with a system call it makes on its
// own once cryo is gone (the kernel ends the suspension of the filters,
// PTRACE_O_SUSPEND_SECCOMP, with the ptrace link): the call cryo has set
// going (a remote call, the rest of a batch) and the way back to the task's
// own state. `needed`: the call must run (rt_sigreturn, the restart path,
// the gate's sleep); else it may fail but must not kill or trap. An error
// refuses the call before the task can make it (tree/seccomp.h).
class UntracedCallCheck {
 public:
  virtual ~UntracedCallCheck() = default;
  virtual Status Check(pid_t tid, long nr, const uint64_t args[6], bool needed) const = 0;
};

class RemoteSyscaller {
 public:
  // Calls in the leader of a seized process (dump; see above). `vmas` are
  // the process's mappings (stacks, vDSO); `sig_ign`/`sig_cgt` its ignored
  // and caught signals (SigIgn/SigCgt of /proc/PID/status). Threads found
  // in a killed cryo's code are taken back to their own state first
  // (reclaim.h; `sp` is updated); otherwise nothing is done to the tasks
  // until the first call.
  static Result<std::unique_ptr<RemoteSyscaller>> Attach(SeizedProcess& sp, const std::vector<proc::Vma>& vmas,
                                                         uint64_t sig_ign, uint64_t sig_cgt);
  // Plain calls at `syscall_insn` in a task that dies with cryo (restore).
  static std::unique_ptr<RemoteSyscaller> Unguarded(pid_t tid, const user_regs_struct& regs, uint64_t syscall_insn);
  // Puts the task back (Finish() for the thread that owns the scratch memory).
  ~RemoteSyscaller();
  RemoteSyscaller(const RemoteSyscaller&) = delete;
  RemoteSyscaller& operator=(const RemoteSyscaller&) = delete;

  // Runs one system call; returns the raw result (-errno on failure).
  Result<long> Syscall(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0,
                       uint64_t a6 = 0);
  // Runs a call that makes an fd in the task (userfaultfd(2)) and returns a
  // duplicate of it (pidfd_getfd(2) at the call's syscall-exit stop); the
  // call's way back closes it in the task (the code's close_result), so
  // that the task never keeps it, whenever cryo dies. `what` names it.
  Result<UniqueFd> TakeFdMadeBy(long nr, uint64_t a1, const std::string& what);
  // Runs `calls` in order inside the task and returns their raw results
  // (-errno on failure), like as many Syscall()s, with one stop instead of
  // two each when the thread has a signal to end the loop with (see above);
  // otherwise one at a time. The table lies at the top of the scratch
  // memory: the calls' outputs must stay below scratch() + scratch_size() -
  // kBatchTableBytes.
  static constexpr size_t kMaxBatch = 128;
  static constexpr size_t kBatchEntryBytes = 64;
  // A batch's table: its calls, the closing signal and the exit call.
  static constexpr size_t TableBytes(size_t calls) { return (calls + 2) * kBatchEntryBytes; }
  static constexpr size_t kBatchTableBytes = (kMaxBatch + 2) * kBatchEntryBytes;  // TableBytes(kMaxBatch)
  Result<std::vector<long>> Batch(const std::vector<RemoteCall>& calls);
  // Batch() in two halves, so that several threads of a process run their
  // batches at the same time: StartBatch() sets the calls going with their
  // table at `table` (TableBytes(calls.size()), inside the scratch memory,
  // apart from every other thread's table and outputs), FinishBatch() waits
  // for them and returns the results. One at a time, the calls run in
  // StartBatch().
  Status StartBatch(const std::vector<RemoteCall>& calls, uint64_t table);
  Result<std::vector<long>> FinishBatch();
  // Whether batches run with one stop (for tests and logs).
  bool batch_in_one_stop() const { return batch_signal_ != 0; }
  // Maps `size` bytes of scratch memory in the target, with the batch loop's
  // page right after it (one range, one munmap).
  Status MapScratch(size_t size);
  uint64_t scratch() const;
  size_t scratch_size() const;
  Status WriteMem(uint64_t addr, const void* data, size_t n);
  Status ReadMem(uint64_t addr, void* data, size_t n);
  // The thread that owns the scratch memory: unmaps it, puts the task back
  // into its own state and the vDSO's bytes back. Every other thread's
  // syscaller must be gone first.
  Status Finish();
  // Another thread of the same process, using this one's scratch memory.
  Result<std::unique_ptr<RemoteSyscaller>> ForThread(const SeizedTask& task);
  // Puts this thread back into its own state: mask, registers (with the
  // syscall restart it was due), the stack bytes under its frame.
  Status Release();

  // The gate (injected_code.h), which holds a task still should cryo die:
  // PrepareGate() puts the code in place (the fallback maps its page) and
  // returns the address of the gate's flag; Hold() stops the thread at the
  // entry of the gate's sleep (untraced, it would wait there until the flag
  // is set or `rounds` sleeps of 1 ms are over, then go back to its own
  // state); Unhold() skips that sleep and leaves the thread at rest at its
  // exit. Open the gate (OpenGate) before the first Unhold(): a cryo dying
  // then lets the thread go on at once.
  Result<uint64_t> PrepareGate();
  Status Hold(uint64_t rounds);
  Status Unhold();
  Status OpenGate();

  // Where to note a SIGSTOP the task dequeues while it runs our calls (set to
  // SIGSTOP): it cannot be blocked, and is kept from taking effect; the caller
  // records it as a stop to come. Inherited by ForThread().
  void SetStopSink(int* sink) { stop_sink_ = sink; }
  // Every call this thread could make on its own checked first (inherited
  // by ForThread(); null: none).
  void SetUntracedCallCheck(const UntracedCallCheck* check) { check_ = check; }

 private:
  RemoteSyscaller() = default;
  RemoteSyscaller(const SeizedTask& task, std::shared_ptr<RemoteProcess> proc);
  bool guarded() const { return proc_ != nullptr; }
  Status Enter();
  Status Inject(const user_regs_struct& regs, int request);
  Status WaitSyscallStops(long nr);
  Status WaitBatchEnd();
  // A stop other than the one awaited: resumed with no signal, after noting
  // what it was (a group-stop or interrupt trap, a SIGSTOP dequeued).
  Status OnOtherStop(const StopInfo& si, const char* during);
  Status Park();
  uint64_t Finisher() const;
  Result<long> UnguardedSyscall(long nr, const uint64_t args[6]);
  Result<long> Call(long nr, const uint64_t args[6], bool unmap_result);
  // The whole code in place (the fallback maps its page), for the gate and
  // close_result.
  Status WholeCode(const char* what);

  pid_t tid_ = 0;
  int* stop_sink_ = nullptr;
  const UntracedCallCheck* check_ = nullptr;
  Status CheckUntraced(long nr, std::initializer_list<uint64_t> args, bool needed) const;
  pid_t tgid_ = 0;
  std::shared_ptr<RemoteProcess> proc_;  // null: unguarded
  bool owner_ = false;                   // owns the scratch memory
  user_regs_struct own_{};               // as seized
  uint64_t own_mask_ = 0;
  std::string own_xsave_;
  user_regs_struct base_{};  // own_ with rsp on the frame and no syscall restart
  uint64_t syscall_insn_ = 0;  // unguarded
  // Progress, for Release().
  bool entered_ = false;  // frame written
  bool injected_ = false;  // registers changed
  bool masked_ = false;   // cryo's mask set
  bool held_ = false;     // at the entry of the gate's sleep
  SigFrame frame_;
  std::string under_frame_;  // the stack bytes the frame covers
  int batch_signal_ = 0;     // 0: batches run one call at a time
  bool restart_ = false;     // finishes its interrupted call by the code's "restart"
  // The batch between StartBatch() and FinishBatch().
  bool batch_started_ = false;
  bool loop_running_ = false;  // started and its end not seen yet
  uint64_t batch_table_ = 0;
  size_t batch_calls_ = 0;
  std::vector<long> batch_results_;  // one at a time: already known
};

// The signal a thread's batches end with: ignored by the process (SIG_IGN,
// or SIG_DFL with a default action of ignoring), not caught, not blocked by
// the thread, and not one whose sending has side effects (SIGCONT and the
// stop signals discard each other's pending instances); 0 if none.
int BatchEndSignal(uint64_t sig_ign, uint64_t sig_cgt, uint64_t blocked);

}  // namespace cryo
