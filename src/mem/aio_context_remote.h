// An AioTarget (aio_context.h) in a stopped task: the calls are remote
// system calls (inject/remote_syscall.h), the memory is read and written
// through the task's scratch memory's syscaller. For the dump (a context
// probed in the original) and the restore (a context made again in the
// restored process), neither wired yet.
#pragma once

#include <memory>

#include "inject/remote_syscall.h"
#include "mem/aio_context.h"

namespace cryo {

class RemoteAioTarget : public AioTarget {
 public:
  // `rs` has its scratch memory mapped (MapScratch, at least
  // kAioScratchBytes below its batch table); the target uses its start. The
  // fd for zero-byte reads is a memfd made in the task (memfd_create(2): no
  // path, whatever the task's mount namespace), closed by Close().
  static Result<std::unique_ptr<RemoteAioTarget>> Make(RemoteSyscaller& rs);
  // For a restored task (RemoteSyscaller::Unguarded, which has no scratch
  // memory and dies with cryo): maps its own scratch memory in the task,
  // unmapped by Close(); Batch() runs the calls one at a time.
  static Result<std::unique_ptr<RemoteAioTarget>> MakeUnguarded(RemoteSyscaller& rs);
  ~RemoteAioTarget() override;  // Close(): destroy it before the syscaller
  // Closes the memfd in the task.
  Status Close();

  Result<long> Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) override;
  Status Read(uint64_t addr, void* buf, size_t n) override { return rs_.ReadMem(addr, buf, n); }
  Status Write(uint64_t addr, const void* buf, size_t n) override { return rs_.WriteMem(addr, buf, n); }
  uint64_t Scratch() override { return own_scratch_ ? own_scratch_ : rs_.scratch(); }
  size_t ScratchBytes() override {
    return own_scratch_ ? kOwnScratchBytes : rs_.scratch_size() - RemoteSyscaller::kBatchTableBytes;
  }
  int ZeroFd() override { return fd_; }
  // One batch in one stop (RemoteSyscaller::Batch), else an error: run one
  // call at a time, the task would be left between them should cryo die.
  Result<std::vector<long>> Batch(const std::vector<Call>& calls) override;

 private:
  explicit RemoteAioTarget(RemoteSyscaller& rs) : rs_(rs) {}
  Status MakeFd();
  static constexpr size_t kOwnScratchBytes = 64 << 10;
  RemoteSyscaller& rs_;
  int fd_ = -1;
  uint64_t own_scratch_ = 0;  // MakeUnguarded
};

}  // namespace cryo
