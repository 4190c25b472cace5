#include "mem/memfd.h"
#include "mem/hugetlb.h"
#include "mem/shm_object.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>

namespace cryo {

namespace {

constexpr std::string_view kPrefix = "/memfd:";
constexpr std::string_view kDeleted = " (deleted)";

// memfd_create(2) flags newer than glibc's headers may be.
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

constexpr uint32_t kAllSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

}  // namespace

std::optional<std::string> MemfdName(std::string_view link, bool has_deleted_suffix) {
  if (!link.starts_with(kPrefix)) return std::nullopt;
  link.remove_prefix(kPrefix.size());
  if (has_deleted_suffix) {
    // A memfd has no directory entry: the kernel always appends the suffix.
    if (!link.ends_with(kDeleted)) return std::nullopt;
    link.remove_suffix(kDeleted.size());
  }
  return std::string(link);
}

std::string SealsString(uint32_t seals) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {F_SEAL_SEAL, "seal"},   {F_SEAL_SHRINK, "shrink"},       {F_SEAL_GROW, "grow"},
      {F_SEAL_WRITE, "write"}, {F_SEAL_FUTURE_WRITE, "future-write"}, {F_SEAL_EXEC, "exec"},
  };
  if (seals == 0) return "none";
  std::string out;
  for (const auto& [bit, name] : kNames)
    if (seals & bit) {
      out += out.empty() ? "" : "|";
      out += name;
      seals &= ~bit;
    }
  if (seals) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%s%#x", out.empty() ? "" : "|", seals);
    out += buf;
  }
  return out;
}

bool KnownSeals(uint32_t seals) { return (seals & ~kAllSeals) == 0; }

Status ReadMemfdState(int fd, const std::string& what, image::ShmObject* out) {
  // A hugetlb memfd (MFD_HUGETLB) is a hugetlbfs file: its page size is
  // recorded by DescribeObject (shm_dump.cc).
  CRYO_ASSIGN_OR_RETURN(const uint64_t huge, HugetlbPageSizeOfFd(fd, what));
  out->set_huge_page_size(huge);
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return Status::FromErrno("F_GET_SEALS on " + what);
  if (!KnownSeals(static_cast<uint32_t>(seals)))
    return Status::Error(what + " has seals " + SealsString(static_cast<uint32_t>(seals)) + " this cryo does not know");
  out->set_seals(static_cast<uint32_t>(seals));
  out->set_writers_uncounted(!HasCountedWriter(fd));
  return Status::Ok();
}

bool HasCountedWriter(int ro_fd) {
  // A read lease is refused while the inode is open for writing
  // (check_conflicting_open in fs/locks.c: i_writecount > 0). memfd_create's
  // own file is made without get_write_access, a reopen through /proc is not.
  if (::fcntl(ro_fd, F_SETLEASE, F_RDLCK) == 0) {
    ::fcntl(ro_fd, F_SETLEASE, F_UNLCK);
    return false;
  }
  return true;  // EAGAIN; or leases unavailable: assume a counted writer (every writer reopened)
}

Result<int> CreateMemfd(const image::ShmObject& obj) {
  const std::string what = "memfd \"" + obj.name() + "\" (shared memory object " + std::to_string(obj.id()) + ")";
  if (!KnownSeals(obj.seals())) return Status::Error(what + " has unknown seals " + SealsString(obj.seals()));
  // Sealing stays allowed until MemfdAddSeals. An exec seal is made by
  // MFD_NOEXEC_SEAL (memfd_create(2)); MFD_EXEC keeps a vm.memfd_noexec=1
  // default from adding one the original did not have.
  // A hugetlb memfd: MFD_HUGETLB with the page size (MFD_HUGE_2MB, ...).
  const unsigned huge = obj.huge_page_size() ? MFD_HUGETLB | static_cast<unsigned>(HugetlbSizeBits(obj.huge_page_size())) : 0;
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | huge | ((obj.seals() & F_SEAL_EXEC) ? MFD_NOEXEC_SEAL : MFD_EXEC);
  int fd = ::memfd_create(obj.name().c_str(), flags);
  if (fd < 0 && errno == EINVAL) fd = ::memfd_create(obj.name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | huge);  // before 6.3
  if (fd < 0) return Status::FromErrno("memfd_create for " + what);
  Status st = ShapeShmFile(fd, obj, what);
  if (!st.ok()) {
    ::close(fd);
    return st;
  }
  return fd;
}

Status MemfdAddSeals(int fd, const image::ShmObject& obj) {
  // F_SEAL_EXEC came with MFD_NOEXEC_SEAL; the kernel accepts adding it again.
  if (obj.seals() == 0) return Status::Ok();
  if (::fcntl(fd, F_ADD_SEALS, static_cast<int>(obj.seals())) != 0)
    return Status::FromErrno("F_ADD_SEALS " + SealsString(obj.seals()) + " on memfd \"" + obj.name() + "\"");
  return Status::Ok();
}

}  // namespace cryo
