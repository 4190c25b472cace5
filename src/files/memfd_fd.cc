// Fds on shared memory objects: memfds (FD_MEMFD) and files of /dev/shm
// (FD_POSIX_SHM, shm_open(3)), also unlinked. The object itself, with its
// content, is recorded once for the tree (src/mem/shm_dump.h); each open file
// description is a new open of the restored object with its flags and offset.
#include <fcntl.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"
#include "mem/hugetlb.h"
#include "mem/memfd.h"
#include "mem/posix_shm.h"
#include "mem/shm_restore.h"

namespace cryo {

namespace {

Result<int> OpenObject(const image::Fd& f) {
  const ShmObjects* objects = RestoringShmObjects();
  if (!objects) return Status::Error("no shared memory objects are being restored");
  CRYO_ASSIGN_OR_RETURN(int fd, objects->OpenDescription(f.shm_object(), static_cast<int>(f.flags())));
  if (f.pos() != 0 && ::lseek(fd, static_cast<off_t>(f.pos()), SEEK_SET) != static_cast<off_t>(f.pos())) {
    Status st = Status::FromErrno("lseek to " + std::to_string(f.pos()));
    ::close(fd);
    return st;
  }
  return fd;
}

class MemfdFd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_MEMFD; }
  const char* name() const override { return "memfd"; }
  const char* feature() const override { return "memfd"; }
  bool Handles(const FdSource& s) const override {
    return S_ISREG(s.st.st_mode) && MemfdName(s.link, true).has_value();
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    // Read its state here (seals, page size), so that a memfd cryo cannot
    // restore is refused naming the fd, before anything else.
    const std::string path = "/proc/" + std::to_string(s.pid) + "/fd/" + std::to_string(s.fd);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + path);
    image::ShmObject probe;
    Status st = ReadMemfdState(fd, s.link, &probe);
    ::close(fd);
    CRYO_RETURN_IF_ERROR(st);
    FillFileId(s, out->mutable_file());
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override { return OpenObject(f); }
};

class PosixShmFd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_POSIX_SHM; }
  const char* name() const override { return "POSIX shared memory"; }
  const char* feature() const override { return "posix-shm"; }
  // Also a file of a hugetlbfs mount (mem/hugetlb.h): the same kind of
  // object, a file in memory by path.
  bool Handles(const FdSource& s) const override {
    return S_ISREG(s.st.st_mode) &&
           (IsPosixShm(s.link, s.st.st_dev) ||
            (!MemfdName(s.link, true).has_value() && IsOnHugetlbfs("/proc/" + std::to_string(s.pid) + "/fd/" + std::to_string(s.fd))));
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    FillFileId(s, out->mutable_file());
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override { return OpenObject(f); }
};

}  // namespace

const FdKindHandler* MemfdHandler() {
  static const MemfdFd h;
  return &h;
}
const FdKindHandler* PosixShmHandler() {
  static const PosixShmFd h;
  return &h;
}

}  // namespace cryo
