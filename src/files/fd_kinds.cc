#include <sys/syscall.h>
#include <unistd.h>

#include "files/fd_kind.h"

namespace cryo {

int FdSource::Grab() const { return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

const std::vector<const FdKindHandler*>& FdKindHandlers() {
  static const std::vector<const FdKindHandler*> kAll = {
      RegularFileHandler(),
      DirectoryHandler(),
      CharDeviceHandler(),
      EventfdHandler(),
      TimerfdHandler(),
      SignalfdHandler(),
      EpollHandler(),
      InotifyHandler(),
      PipeHandler(),
      PtyHandler(),
      ExternalTtyHandler(),
  };
  return kAll;
}

const FdKindHandler* HandlerFor(image::FdKind kind) {
  for (const FdKindHandler* h : FdKindHandlers())
    if (h->kind() == kind) return h;
  return nullptr;
}

}  // namespace cryo
