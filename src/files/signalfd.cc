// signalfd(2): only the mask is state of the fd itself (fdinfo "sigmask"); the
// signals it reads are the process's pending signals, which the task state
// dumps and the restorer queues again.
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>

#include "base/file_util.h"
#include "files/event_fds.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

class Signalfd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_SIGNALFD; }
  const char* name() const override { return "signalfd"; }
  const char* feature() const override { return "signalfd"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:[signalfd]"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    return ParseSignalfdInfo(s.info, out->mutable_signalfd());
  }
  Result<int> Open(const image::Fd& f) const override {
    const uint64_t mask = f.signalfd().mask();
    const int flags = SFD_CLOEXEC | ((f.flags() & O_NONBLOCK) ? SFD_NONBLOCK : 0);
    // The raw call takes the kernel's 8-byte sigset as the mask was dumped.
    int fd = static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof(mask), flags));
    if (fd < 0) return Status::FromErrno("signalfd4");
    return fd;
  }
};

}  // namespace

Status ParseSignalfdInfo(const proc::FdInfo& info, image::SignalfdState* out) {
  auto it = info.fields.find("sigmask");
  if (it == info.fields.end()) return Status::Error("fdinfo has no sigmask line");
  std::string_view s = Trim(it->second);
  uint64_t mask = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), mask, 16);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size())
    return Status::Error("malformed sigmask \"" + it->second + "\"");
  out->set_mask(mask);
  return Status::Ok();
}

const FdKindHandler* SignalfdHandler() {
  static const Signalfd h;
  return &h;
}

}  // namespace cryo
