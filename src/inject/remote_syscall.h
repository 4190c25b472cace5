// System calls run inside a seized task: point the stopped thread at a `syscall`
// instruction of its own address space (found in its vDSO), load the argument
// registers, and let it run from syscall-entry stop to syscall-exit stop. Used for
// state /proc does not show (sigactions, sigaltstack, itimers, prctl values).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"

namespace cryo {

// One system call of a batch: number and arguments.
struct RemoteCall {
  long nr = 0;
  uint64_t args[6] = {};
};

class RemoteSyscaller {
 public:
  // `regs` are the task's registers as seized (restored by the caller on detach).
  RemoteSyscaller(pid_t tid, const user_regs_struct& regs) : tid_(tid), base_regs_(regs) {}
  ~RemoteSyscaller();

  // Finds a syscall instruction in the task's vDSO (or any executable VMA) and
  // blocks all signals so none is delivered while we run system calls.
  Status Prepare(const std::vector<proc::Vma>& vmas);
  // Runs one system call; returns the raw result (-errno on failure).
  Result<long> Syscall(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0,
                       uint64_t a6 = 0);
  // Runs `calls` in order inside the task and returns their raw results
  // (-errno on failure), like as many Syscall()s. A code page mapped in the
  // task (a loop over a table of calls, ending in int3) runs them all with one
  // stop instead of two each. The int3 raises SIGTRAP, which the kernel forces
  // through a blocked mask by resetting the action to SIG_DFL
  // (force_sig_info_to_task), so the loop is used only while SIGTRAP is at
  // SIG_DFL already; otherwise, or if the code page cannot be made, the calls
  // run one at a time. The table lies at the top of the scratch memory: the
  // calls' outputs must stay below scratch() + scratch_size() - kBatchTableBytes.
  static constexpr size_t kMaxBatch = 128;
  static constexpr size_t kBatchEntryBytes = 64;
  static constexpr size_t kBatchTableBytes = kMaxBatch * kBatchEntryBytes;
  Result<std::vector<long>> Batch(const std::vector<RemoteCall>& calls);
  // Batch() in two halves, so that several threads of a process run their
  // batches at the same time: StartBatch() sets the calls going with their
  // table at `table` (kBatchEntryBytes a call, inside the scratch memory, apart
  // from every other thread's table and outputs), FinishBatch() waits for them
  // and returns the results. One at a time, the calls run in StartBatch().
  Status StartBatch(const std::vector<RemoteCall>& calls, uint64_t table);
  Result<std::vector<long>> FinishBatch();
  // Whether Batch() has been running calls with one stop (for tests and logs).
  bool batch_in_one_stop() const { return batch_mode_ == BatchMode::kLoop; }
  // Maps `size` bytes of scratch memory in the target (remote mmap), with the
  // batch loop's page right after it when the task allows a writable and
  // executable mapping (not under PR_SET_MDWE): one mapping, one munmap.
  Status MapScratch(size_t size);
  // The task's ignored and caught signals (SigIgn, SigCgt of /proc/PID/status),
  // if the caller has read them: saves Batch() reading them for SIGTRAP.
  void SetDispositions(uint64_t ignored, uint64_t caught) {
    dispositions_known_ = true;
    sig_ign_ = ignored;
    sig_cgt_ = caught;
  }
  uint64_t scratch() const { return scratch_; }
  size_t scratch_size() const { return scratch_size_; }
  Status WriteMem(uint64_t addr, const void* data, size_t n);
  Status ReadMem(uint64_t addr, void* data, size_t n);
  // Unmaps the scratch memory (and the batch code page). The caller restores
  // registers and the mask.
  Status Finish();
  // Another thread of the same process, using this one's syscall instruction
  // and scratch memory (not unmapped by it); blocks that thread's signals.
  Result<std::unique_ptr<RemoteSyscaller>> ForThread(pid_t tid, const user_regs_struct& regs) const;

  // Where to note a SIGSTOP the task dequeues while it runs our calls (set to
  // SIGSTOP): it cannot be blocked, and is kept from taking effect; the caller
  // records it as a stop to come. Inherited by ForThread().
  void SetStopSink(int* sink) { stop_sink_ = sink; }

  uint64_t syscall_insn() const { return syscall_insn_; }
  // Uses a known syscall instruction instead of Prepare()'s search.
  void SetSyscallInsn(uint64_t addr) { syscall_insn_ = addr; }

 private:
  enum class BatchMode { kUnknown, kLoop, kOneByOne };
  Status PrepareBatch();
  Status StartLoop(const std::vector<RemoteCall>& calls, uint64_t table);
  Result<std::vector<long>> FinishLoop();
  // A stop other than the one awaited: true if it is one a seized task may
  // report in passing (a group-stop or interrupt trap, a SIGSTOP dequeued).
  bool ExpectedDetour(const StopInfo& si);
  pid_t tid_;
  user_regs_struct base_regs_;
  int* stop_sink_ = nullptr;
  uint64_t syscall_insn_ = 0;
  uint64_t scratch_ = 0;
  size_t scratch_size_ = 0;
  bool owns_scratch_ = true;
  BatchMode batch_mode_ = BatchMode::kUnknown;
  uint64_t code_ = 0;  // the batch loop's page (owned with the scratch memory)
  size_t mapping_len_ = 0;  // scratch, and the loop's page when it follows it
  bool code_separate_ = false;  // the loop's page is a mapping of its own
  bool dispositions_known_ = false;
  uint64_t sig_ign_ = 0, sig_cgt_ = 0;
  // The batch between StartBatch() and FinishBatch().
  bool batch_started_ = false;
  uint64_t batch_table_ = 0;
  size_t batch_calls_ = 0;
  std::vector<long> batch_results_;  // one at a time: already known
};

// Finds the address of a `syscall` instruction (0f 05) in the task's vDSO, or else
// in any executable mapping.
Result<uint64_t> FindSyscallInsn(pid_t pid, const std::vector<proc::Vma>& vmas);

}  // namespace cryo
