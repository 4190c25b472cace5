// Pipes: each fd records which pipe (by inode) and which end; the pipe itself,
// with its capacity and unread data, is a shared object of the image
// (pipe_table.h).
#include <fcntl.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

class PipeEndHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_PIPE; }
  const char* name() const override { return "pipe"; }
  const char* feature() const override { return "pipes"; }
  bool Handles(const FdSource& s) const override { return S_ISFIFO(s.st.st_mode) && StartsWith(s.link, "pipe:"); }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    out->mutable_pipe()->set_pipe_id(s.st.st_ino);
    out->mutable_pipe()->set_write_end((s.info.flags & O_ACCMODE) == O_WRONLY);
    return Status::Ok();
  }
  // Pipes are created by the fd pool (fd_pool.cc), both ends at once.
  Result<int> Open(const image::Fd& fd) const override {
    return Status::Error("pipe " + std::to_string(fd.pipe().pipe_id()) + " must come from the fd pool");
  }
};

}  // namespace

const FdKindHandler* PipeHandler() {
  static const PipeEndHandler h;
  return &h;
}

}  // namespace cryo
