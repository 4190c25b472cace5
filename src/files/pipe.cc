// Pipes and FIFOs: each fd records which pipe (by inode) and which end; the
// pipe itself, with its capacity and unread data, is a shared object of the
// image (pipe_table.h). A FIFO is the same kernel pipe behind a path: its fds
// are reopened by that path at restore (fd_pool.cc).
#include <fcntl.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"
#include "proc/unlinked_path.h"

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

class FifoEndHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_FIFO; }
  const char* name() const override { return "FIFO"; }
  const char* feature() const override { return "fifos"; }
  bool Handles(const FdSource& s) const override { return S_ISFIFO(s.st.st_mode) && !StartsWith(s.link, "pipe:"); }
  // A FIFO that was deleted keeps its link, " (deleted)" included, as its
  // path: the pipe table (pipe_table.cc) records it as unlinked.
  void AddFeatures(const image::Fd& fd, std::set<std::string>* features) const override {
    features->insert(feature());
    if (IsDeletedLink(fd.file().path())) features->insert("unlinked-files");
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    if (s.link.empty() || s.link[0] != '/')
      return Status::Error(s.what() + " is a FIFO without a path (" + s.link + "), which is not supported yet");
    if (IsDeletedLink(s.link)) {
      paths::Opened o;
      CRYO_RETURN_IF_ERROR(FdOpened(s, &o));
      if (s.st.st_nlink > 0)
        return Status::Error("the FIFO " + s.link + " was deleted but has another name, which cryo does not look for");
      const std::string why = paths::WhyNotRecreatable(o);
      if (!why.empty()) return Status::Error("the FIFO " + paths::ShownPath(o) + " " + why);
    } else {
      CRYO_RETURN_IF_ERROR(CheckReopenable(s));
    }
    FillFileId(s, out->mutable_file());
    out->mutable_pipe()->set_pipe_id(FifoPipeId(s.st.st_dev, s.st.st_ino));
    out->mutable_pipe()->set_write_end((s.info.flags & O_ACCMODE) == O_WRONLY);
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& fd) const override {
    return Status::Error("FIFO " + fd.file().path() + " must come from the fd pool");
  }
};

}  // namespace

uint64_t FifoPipeId(uint64_t dev, uint64_t ino) {
  // Apart from pipefs inode numbers (pipes), which never have the top bit set.
  return (1ull << 63) | ((dev << 32) ^ ino);
}

const FdKindHandler* PipeHandler() {
  static const PipeEndHandler h;
  return &h;
}

const FdKindHandler* FifoHandler() {
  static const FifoEndHandler h;
  return &h;
}

}  // namespace cryo
