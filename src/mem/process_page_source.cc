// Reading a process's memory for the page copy (page_dump.h,
// ProcessPageSource): process_vm_readv(2), /proc/PID/mem where it cannot.
#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "mem/page_dump.h"

namespace cryo {

namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

}  // namespace

Result<std::unique_ptr<ProcessPageSource>> ProcessPageSource::Open(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFd mem(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mem.valid()) return Status::FromErrno("open " + path);
  return std::unique_ptr<ProcessPageSource>(new ProcessPageSource(pid, std::move(mem)));
}

Status ProcessPageSource::ReadProcMem(uint64_t vaddr, uint64_t len, char* dst, int vm_readv_errno) {
  for (uint64_t done = 0; done < len;) {
    ssize_t r = ::pread(mem_.get(), dst + done, len - done, static_cast<off_t>(vaddr + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = r < 0 ? errno : EIO;
      std::string what = "read of pid " + std::to_string(pid_) + " memory at " + Hex(vaddr + done) + " (/proc/" +
                         std::to_string(pid_) + "/mem)";
      if (vm_readv_errno) what += " after process_vm_readv failed there (" + std::string(strerror(vm_readv_errno)) + ")";
      return Status::Errno(err, what);
    }
    done += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Status ProcessPageSource::Read(const PagePiece* pieces, size_t n, char* dst) {
  size_t i = 0;
  while (i < n) {
    if (!pieces[i].readable) {
      CRYO_RETURN_IF_ERROR(ReadProcMem(pieces[i].vaddr, pieces[i].len, dst, 0));
      dst += pieces[i].len;
      ++i;
      continue;
    }
    // A batch of consecutive readable pieces, one call.
    remote_.clear();
    uint64_t bytes = 0;
    for (size_t j = i; j < n && pieces[j].readable && remote_.size() < IOV_MAX; ++j) {
      remote_.push_back({reinterpret_cast<void*>(pieces[j].vaddr), pieces[j].len});
      bytes += pieces[j].len;
    }
    struct iovec local = {dst, bytes};
    const ssize_t r = ::process_vm_readv(pid_, &local, 1, remote_.data(), remote_.size(), 0);
    if (r == static_cast<ssize_t>(bytes)) {
      dst += bytes;
      i += remote_.size();
      continue;
    }
    // A partial transfer stops at the first page it could not read: skip the
    // pieces read whole, read the rest of the stuck one through /proc/PID/mem.
    const int err = r < 0 ? errno : 0;
    uint64_t got = r > 0 ? static_cast<uint64_t>(r) : 0;
    while (got >= pieces[i].len) {
      got -= pieces[i].len;
      dst += pieces[i].len;
      ++i;
    }
    CRYO_RETURN_IF_ERROR(ReadProcMem(pieces[i].vaddr + got, pieces[i].len - got, dst + got, err ? err : EFAULT));
    dst += pieces[i].len;
    ++i;
  }
  return Status::Ok();
}

}  // namespace cryo
