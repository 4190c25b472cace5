#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_kind.h"
#include "files/file_facts.h"

namespace cryo {

std::string NamePid(pid_t pid) {
  auto comm = ReadFileToString("/proc/" + std::to_string(pid) + "/comm");
  return "pid " + std::to_string(pid) + (comm.ok() ? " (" + std::string(Trim(*comm)) + ")" : std::string());
}

int FdSource::Grab() const { return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

bool IsDeletedLink(const std::string& link) {
  return link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0;
}

Status FdOpened(const FdSource& src, paths::Opened* o) {
  o->link = src.link;
  o->st = src.st;
  o->access = static_cast<int>(src.info.flags & O_ACCMODE);
  const std::string entry = "/proc/" + std::to_string(src.pid) + "/fd/" + std::to_string(src.fd);
  struct statfs sf;
  if (::statfs(entry.c_str(), &sf) != 0) return Status::FromErrno("statfs " + entry);
  o->fs_type = static_cast<long>(sf.f_type);
  return Status::Ok();
}

Status CheckReopenable(const FdSource& src) {
  paths::Opened o;
  CRYO_RETURN_IF_ERROR(FdOpened(src, &o));
  static const paths::TaskIds kNone;
  const std::string why = paths::WhyNotReopenable(o, src.tree ? *src.tree : kNone);
  if (why.empty()) return Status::Ok();
  return Status::Error(paths::ShownPath(o) + " " + why);
}

void FillFileId(const FdSource& src, image::FileId* id) { FileIdFromStat(src.link, src.st, id); }

const std::vector<const FdKindHandler*>& FdKindHandlers() {
  static const std::vector<const FdKindHandler*> kAll = {
      // Before regular files: a /dev/shm file is one, but its content goes in the image.
      PosixShmHandler(),
      MemfdHandler(),
      // Before regular files: a queue's fd is one, on the mqueue file system.
      MqueueFdHandler(),
      RegularFileHandler(),
      DirectoryHandler(),
      UnlinkedFileHandler(),
      CharDeviceHandler(),
      EventfdHandler(),
      PidfdHandler(),
      TimerfdHandler(),
      SignalfdHandler(),
      EpollHandler(),
      InotifyHandler(),
      PipeHandler(),
      FifoHandler(),
      ListenSocketFdHandler(),
      UnixSocketFdHandler(),
      TcpSocketFdHandler(),
      UdpSocketFdHandler(),
      NetlinkSocketFdHandler(),
      PtyHandler(),
      ExternalTtyHandler(),
      OtherSocketFdHandler(),  // last: any socket the others did not take
  };
  return kAll;
}

const FdKindHandler* HandlerFor(image::FdKind kind) {
  for (const FdKindHandler* h : FdKindHandlers())
    if (h->kind() == kind) return h;
  return nullptr;
}

}  // namespace cryo
