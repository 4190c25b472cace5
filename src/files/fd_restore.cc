#include "files/fd_restore.h"

#include <fcntl.h>
#include <unistd.h>

namespace cryo {

namespace {

// Flags that only make sense at creation time, or that open(2) must not see again.
constexpr uint32_t kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC;

Status RestoreOne(const image::Fd& f) {
  const std::string what = "fd " + std::to_string(f.fd()) + " (" + f.file().path() + ")";
  int flags = static_cast<int>(f.flags() & ~kCreationFlags) | O_NOCTTY;
  int fd = ::open(f.file().path().c_str(), flags);
  if (fd < 0) return Status::FromErrno("reopening " + what);
  if (fd != f.fd()) {
    if (::dup2(fd, f.fd()) < 0) {
      Status s = Status::FromErrno("dup2 for " + what);
      ::close(fd);
      return s;
    }
    ::close(fd);
  }
  if (f.cloexec() && ::fcntl(f.fd(), F_SETFD, FD_CLOEXEC) != 0) return Status::FromErrno("F_SETFD on " + what);
  if ((f.kind() == image::FD_REGULAR || f.kind() == image::FD_DIRECTORY) && f.pos() != 0 && !(f.flags() & O_PATH)) {
    if (::lseek(f.fd(), static_cast<off_t>(f.pos()), SEEK_SET) != static_cast<off_t>(f.pos()))
      return Status::FromErrno("lseek to " + std::to_string(f.pos()) + " on " + what);
  }
  return Status::Ok();
}

}  // namespace

int MaxFd(const image::FdTable& table) {
  int max = -1;
  for (const image::Fd& f : table.fds()) max = std::max(max, f.fd());
  return max;
}

Status RestoreFds(const image::FdTable& table) {
  for (const image::Fd& f : table.fds()) {
    switch (f.kind()) {
      case image::FD_REGULAR:
      case image::FD_DIRECTORY:
      case image::FD_CHARDEV:
        CRYO_RETURN_IF_ERROR(RestoreOne(f));
        break;
      default:
        return Status::Error("fd " + std::to_string(f.fd()) + " is of a kind this cryo cannot restore");
    }
  }
  return Status::Ok();
}

}  // namespace cryo
