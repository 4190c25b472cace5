#include "mem/aio_context_remote.h"

#include <sys/mman.h>
#include <sys/syscall.h>

namespace cryo {

Result<std::unique_ptr<RemoteAioTarget>> RemoteAioTarget::Make(RemoteSyscaller& rs) {
  if (rs.scratch_size() < kAioScratchBytes + RemoteSyscaller::kBatchTableBytes)
    return Status::Error("the remote scratch memory is too small for an AIO context's probe");
  std::unique_ptr<RemoteAioTarget> t(new RemoteAioTarget(rs));
  CRYO_RETURN_IF_ERROR(t->MakeFd());
  return t;
}

Result<std::unique_ptr<RemoteAioTarget>> RemoteAioTarget::MakeUnguarded(RemoteSyscaller& rs) {
  std::unique_ptr<RemoteAioTarget> t(new RemoteAioTarget(rs));
  CRYO_ASSIGN_OR_RETURN(long addr, rs.Syscall(SYS_mmap, 0, kOwnScratchBytes, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0));
  if (addr < 0 && addr > -4096) return Status::Errno(static_cast<int>(-addr), "remote mmap of scratch memory (AIO)");
  t->own_scratch_ = static_cast<uint64_t>(addr);
  CRYO_RETURN_IF_ERROR(t->MakeFd());
  return t;
}

Status RemoteAioTarget::MakeFd() {
  static constexpr char kName[] = "cryo-aio";
  CRYO_RETURN_IF_ERROR(rs_.WriteMem(Scratch(), kName, sizeof(kName)));
  CRYO_ASSIGN_OR_RETURN(long fd, rs_.Syscall(SYS_memfd_create, Scratch(), MFD_CLOEXEC));
  if (fd < 0) return Status::Errno(static_cast<int>(-fd), "memfd_create in the task (zero-byte AIO reads)");
  fd_ = static_cast<int>(fd);
  return Status::Ok();
}

RemoteAioTarget::~RemoteAioTarget() { (void)Close(); }

Status RemoteAioTarget::Close() {
  if (fd_ >= 0) {
    const int fd = fd_;
    fd_ = -1;
    CRYO_ASSIGN_OR_RETURN(long r, rs_.Syscall(SYS_close, fd));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "closing the AIO probe's memfd in the task");
  }
  if (own_scratch_) {
    const uint64_t at = own_scratch_;
    own_scratch_ = 0;
    CRYO_ASSIGN_OR_RETURN(long r, rs_.Syscall(SYS_munmap, at, kOwnScratchBytes));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "unmapping the AIO scratch memory in the task");
  }
  return Status::Ok();
}

Result<long> RemoteAioTarget::Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
  return rs_.Syscall(nr, a1, a2, a3, a4, a5);
}

Result<std::vector<long>> RemoteAioTarget::Batch(const std::vector<Call>& calls) {
  if (own_scratch_) {  // a restored task: it dies with cryo
    std::vector<long> out;
    for (const Call& c : calls) {
      CRYO_ASSIGN_OR_RETURN(long r, Syscall(c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4]));
      out.push_back(r);
    }
    return out;
  }
  if (!rs_.batch_in_one_stop())
    return Status::Error("the task has no signal to end a batch of remote calls with, so the AIO probe cannot run as "
                         "one batch");
  if (calls.size() > RemoteSyscaller::kMaxBatch)
    return Status::Error("the AIO probe needs " + std::to_string(calls.size()) + " remote calls in one batch, more than " +
                         std::to_string(RemoteSyscaller::kMaxBatch));
  std::vector<RemoteCall> rc(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    rc[i].nr = calls[i].nr;
    for (int j = 0; j < 5; ++j) rc[i].args[j] = calls[i].a[j];
  }
  return rs_.Batch(rc);
}

}  // namespace cryo
