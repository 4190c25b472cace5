#include "base/env.h"
#include "base/local_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace cryo {
namespace {

class PosixWritableFile final : public WritableFile, public LocalFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  Status Append(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_.get(), p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write to " + path_);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status WriteAt(const void* data, size_t n, off_t offset) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::pwrite(fd_.get(), p, n, offset);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write to " + path_);
      }
      p += w;
      offset += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status StartWriteback(off_t offset, size_t n) override {
    if (::sync_file_range(fd_.get(), offset, static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE) != 0)
      return Status::FromErrno("sync_file_range of " + path_);
    return Status::Ok();
  }
  Status Sync() override {
    if (::fsync(fd_.get()) != 0) return Status::FromErrno("fsync " + path_);
    return Status::Ok();
  }
  Status Close() override {
    int fd = fd_.release();
    if (fd >= 0 && ::close(fd) != 0) return Status::FromErrno("close " + path_);
    return Status::Ok();
  }
  const std::string& path() const override { return path_; }
  int local_fd() const override { return fd_.get(); }
  void WrittenElsewhere(off_t, size_t) override {}

 private:
  std::string path_;
  UniqueFd fd_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override {
    // A new inode every time: a file left at that name (a symbolic link, a
    // hard link to another file) is unlinked, never written through.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("cannot replace " + path);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return Status::FromErrno("cannot create " + path);
    if (::fchmod(fd, mode) != 0) {
      Status s = Status::FromErrno("chmod " + path);
      ::close(fd);
      return s;
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }
  Status CreateDir(const std::string& path, mode_t mode) override {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return Status::FromErrno("cannot create directory " + path);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path);
    if (!S_ISDIR(st.st_mode)) return Status::Error(path + " exists and is not a directory");
    if (::chmod(path.c_str(), mode) != 0) return Status::FromErrno("chmod " + path);
    if (::access(path.c_str(), W_OK | X_OK) != 0) return Status::FromErrno("images directory " + path + " is not writable");
    return Status::Ok();
  }
  Status SyncDir(const std::string& path) override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open directory " + path);
    if (::fsync(fd.get()) != 0) return Status::FromErrno("fsync directory " + path);
    return Status::Ok();
  }
};

}  // namespace

Status Env::RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("cannot remove " + path);
  return Status::Ok();
}

Status Env::RemoveDir(const std::string& path) {
  if (::rmdir(path.c_str()) != 0) return Status::FromErrno("cannot remove directory " + path);
  return Status::Ok();
}

Env* Env::Default() {
  static PosixEnv env;
  return &env;
}

}  // namespace cryo
