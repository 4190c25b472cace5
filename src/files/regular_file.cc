// Regular files, directories and stateless character devices: reopened by path
// with their flags; regular files and directories get their offset back.
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"
#include "proc/unlinked_path.h"

namespace cryo {

namespace {

// Flags that only make sense at creation time, or that open(2) must not see again.
constexpr uint32_t kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC;

Result<int> Reopen(const image::Fd& f, bool seek) {
  const std::string what = "fd " + std::to_string(f.fd()) + " (" + f.file().path() + ")";
  const int flags = static_cast<int>(f.flags() & ~kCreationFlags) | O_NOCTTY;
  int fd = ::open(f.file().path().c_str(), flags);
  if (fd < 0) return Status::FromErrno("reopening " + what);
  if (seek && f.pos() != 0 && !(f.flags() & O_PATH) &&
      ::lseek(fd, static_cast<off_t>(f.pos()), SEEK_SET) != static_cast<off_t>(f.pos())) {
    Status s = Status::FromErrno("lseek to " + std::to_string(f.pos()) + " on " + what);
    ::close(fd);
    return s;
  }
  return fd;
}

class RegularFile final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_REGULAR; }
  const char* name() const override { return "regular file"; }
  // Also a file deleted through the name /proc shows that still has another
  // (a hard link): reopened through that one.
  // And a symbolic link itself, held O_PATH | O_NOFOLLOW (open(2)): reopened
  // with those flags it is the link again.
  bool Handles(const FdSource& s) const override {
    const bool symlink_itself = S_ISLNK(s.st.st_mode) && (s.info.flags & O_PATH) && (s.info.flags & O_NOFOLLOW);
    return (S_ISREG(s.st.st_mode) || symlink_itself) && !s.link.empty() && s.link[0] == '/' &&
           (!IsDeletedLink(s.link) || s.st.st_nlink > 0) && !StartsWith(s.link, "/memfd:");
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    if (!IsDeletedLink(s.link)) {
      CRYO_RETURN_IF_ERROR(CheckReopenable(s));
      FillFileId(s, out->mutable_file());
      return Status::Ok();
    }
    paths::Opened o;
    o.link = s.link;
    o.st = s.st;
    auto other = paths::FindOtherName(o);
    if (!other.ok()) return Status::Error(s.link + " " + other.status().message());
    FdSource named = s;
    named.link = *other;
    CRYO_RETURN_IF_ERROR(CheckReopenable(named));
    FillFileId(named, out->mutable_file());
    return Status::Ok();
  }
  void AddFeatures(const image::Fd& fd, std::set<std::string>* features) const override {
    if (S_ISLNK(fd.file().mode())) features->insert("opath-symlink");
  }
  Result<int> Open(const image::Fd& f) const override { return Reopen(f, true); }
};

class Directory final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_DIRECTORY; }
  const char* name() const override { return "directory"; }
  bool Handles(const FdSource& s) const override {
    return S_ISDIR(s.st.st_mode) && !s.link.empty() && s.link[0] == '/' && !IsDeletedLink(s.link);
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    CRYO_RETURN_IF_ERROR(CheckReopenable(s));
    FillFileId(s, out->mutable_file());
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override { return Reopen(f, true); }
};

// Character devices that hold no state of their own and can be reopened by path.
class CharDevice final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_CHARDEV; }
  const char* name() const override { return "character device"; }
  bool Handles(const FdSource& s) const override {
    return S_ISCHR(s.st.st_mode) && (s.link == "/dev/null" || s.link == "/dev/zero" || s.link == "/dev/full" ||
                                     s.link == "/dev/random" || s.link == "/dev/urandom");
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    CRYO_RETURN_IF_ERROR(CheckReopenable(s));
    FillFileId(s, out->mutable_file());
    out->set_rdev(static_cast<uint32_t>(s.st.st_rdev));
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override { return Reopen(f, false); }
};

}  // namespace

const FdKindHandler* RegularFileHandler() {
  static const RegularFile h;
  return &h;
}
const FdKindHandler* DirectoryHandler() {
  static const Directory h;
  return &h;
}
const FdKindHandler* CharDeviceHandler() {
  static const CharDevice h;
  return &h;
}

}  // namespace cryo
