// Fds on regular files and directories that were deleted and have no name
// left (FD_UNLINKED_FILE). The file itself, with its content, is recorded
// once for the tree (unlinked_dump.h) and created again, unlinked, before the
// tree is cloned (unlinked_restore.h); each open file description is a new
// open of it with its flags and offset.
#include <fcntl.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"
#include "files/unlinked_restore.h"
#include "proc/unlinked_path.h"

namespace cryo {

namespace {

class UnlinkedFileFd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_UNLINKED_FILE; }
  const char* name() const override { return "unlinked file"; }
  const char* feature() const override { return "unlinked-files"; }
  bool Handles(const FdSource& s) const override {
    return (S_ISREG(s.st.st_mode) || S_ISDIR(s.st.st_mode)) && s.st.st_nlink == 0 && !s.link.empty() &&
           s.link[0] == '/' && IsDeletedLink(s.link) && !StartsWith(s.link, "/memfd:");
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    paths::Opened o;
    CRYO_RETURN_IF_ERROR(FdOpened(s, &o));
    const std::string why = paths::WhyNotRecreatable(o);
    if (!why.empty()) return Status::Error(paths::ShownPath(o) + " " + why);
    FillFileId(s, out->mutable_file());
    out->mutable_file()->set_path(paths::ShownPath(o));
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const UnlinkedFiles* files = RestoringUnlinkedFiles();
    if (!files) return Status::Error("no unlinked files are being restored");
    CRYO_ASSIGN_OR_RETURN(int fd, files->Reopen(f.unlinked_file(), static_cast<int>(f.flags())));
    if (f.pos() != 0 && !(f.flags() & O_PATH) &&
        ::lseek(fd, static_cast<off_t>(f.pos()), SEEK_SET) != static_cast<off_t>(f.pos())) {
      Status st = Status::FromErrno("lseek to " + std::to_string(f.pos()) + " on the unlinked " + f.file().path());
      ::close(fd);
      return st;
    }
    return fd;
  }
};

}  // namespace

const FdKindHandler* UnlinkedFileHandler() {
  static const UnlinkedFileFd h;
  return &h;
}

}  // namespace cryo
