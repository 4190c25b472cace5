// Terminals that belong to the shell a tree was started from (--shell-job): the
// tree is not the terminal's owner, so the terminal is not part of the image.
// At restore every such fd becomes a new description of the terminal `cryo
// restore` itself runs on, and the tree joins cryo's session, whose
// controlling terminal that is.
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

bool IsTerminal(const FdSource& s) {
  if (!S_ISCHR(s.st.st_mode)) return false;
  const unsigned maj = major(s.st.st_rdev);
  return (maj >= 136 && maj <= 143) /* pts */ || maj == 4 /* tty, ttyS */ || (maj == 5 && minor(s.st.st_rdev) == 0);
}

class ExternalTty final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_EXTERNAL_TTY; }
  const char* name() const override { return "terminal of the calling shell"; }
  const char* feature() const override { return "shell-job"; }
  bool Handles(const FdSource& s) const override { return s.shell_job && IsTerminal(s); }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    out->mutable_file()->set_path(s.link);
    out->set_rdev(static_cast<uint32_t>(s.st.st_rdev));
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    for (int fd = 0; fd <= 2; ++fd) {
      if (!::isatty(fd)) continue;
      const std::string path = "/proc/self/fd/" + std::to_string(fd);
      const int flags = static_cast<int>(f.flags() & (O_ACCMODE | O_NONBLOCK | O_APPEND)) | O_NOCTTY | O_CLOEXEC;
      int r = ::open(path.c_str(), flags);
      if (r < 0) return Status::FromErrno("opening cryo's terminal " + path + " for " + f.file().path());
      return r;
    }
    return Status::Error("--shell-job: the image's terminal fds need a terminal, and cryo's stdin, stdout and "
                         "stderr are not one");
  }
};

}  // namespace

const FdKindHandler* ExternalTtyHandler() {
  static const ExternalTty h;
  return &h;
}

}  // namespace cryo
