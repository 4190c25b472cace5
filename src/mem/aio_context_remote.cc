#include "mem/aio_context_remote.h"

#include <sys/mman.h>
#include <sys/syscall.h>

namespace cryo {

Result<std::unique_ptr<RemoteAioTarget>> RemoteAioTarget::Make(RemoteSyscaller& rs) {
  if (rs.scratch_size() < kAioScratchBytes + RemoteSyscaller::kBatchTableBytes)
    return Status::Error("the remote scratch memory is too small for an AIO context's probe");
  std::unique_ptr<RemoteAioTarget> t(new RemoteAioTarget(rs));
  static constexpr char kName[] = "cryo-aio";
  CRYO_RETURN_IF_ERROR(rs.WriteMem(rs.scratch(), kName, sizeof(kName)));
  CRYO_ASSIGN_OR_RETURN(long fd, rs.Syscall(SYS_memfd_create, rs.scratch(), MFD_CLOEXEC));
  if (fd < 0) return Status::Errno(static_cast<int>(-fd), "memfd_create in the task (zero-byte AIO reads)");
  t->fd_ = static_cast<int>(fd);
  return t;
}

RemoteAioTarget::~RemoteAioTarget() { (void)Close(); }

Status RemoteAioTarget::Close() {
  if (fd_ < 0) return Status::Ok();
  const int fd = fd_;
  fd_ = -1;
  CRYO_ASSIGN_OR_RETURN(long r, rs_.Syscall(SYS_close, fd));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "closing the AIO probe's memfd in the task");
  return Status::Ok();
}

Result<long> RemoteAioTarget::Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
  return rs_.Syscall(nr, a1, a2, a3, a4, a5);
}

Result<std::vector<long>> RemoteAioTarget::Batch(const std::vector<Call>& calls) {
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
