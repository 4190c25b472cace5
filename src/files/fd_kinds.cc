#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "files/file_facts.h"

namespace cryo {

std::string NamePid(pid_t pid) {
  auto comm = ReadFileToString("/proc/" + std::to_string(pid) + "/comm");
  return "pid " + std::to_string(pid) + (comm.ok() ? " (" + std::string(Trim(*comm)) + ")" : std::string());
}

struct FdSource::Taken {
  bool tried = false;
  int error = 0;  // errno of pidfd_getfd
  UniqueFd fd;
  bool kind_read = false;
  SocketKind kind;
  bool netns_read = false;
  int netns_error = 0;
  uint64_t netns = 0;
};

namespace {
std::atomic<uint64_t> fds_taken{0};
}  // namespace

uint64_t FdsTaken() { return fds_taken.load(); }

FdSource::Taken& FdSource::Take() const {
  if (!taken_) taken_ = std::make_shared<Taken>();
  Taken& t = *taken_;
  if (!t.tried) {
    t.tried = true;
    fds_taken.fetch_add(1, std::memory_order_relaxed);
    t.fd.reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
    if (!t.fd.valid()) t.error = errno;
  }
  return t;
}

int FdSource::Dup() const {
  const Taken& t = Take();
  if (!t.fd.valid()) errno = t.error;
  return t.fd.get();
}

int FdSource::Grab() const {
  const int mine = Dup();
  return mine < 0 ? -1 : ::fcntl(mine, F_DUPFD_CLOEXEC, 0);
}

namespace {
int IntOption(int fd, int name) {
  int v = 0;
  socklen_t len = sizeof(v);
  return ::getsockopt(fd, SOL_SOCKET, name, &v, &len) == 0 ? v : -1;
}
}  // namespace

const FdSource::SocketKind& FdSource::Socket() const {
  Taken& t = Take();
  if (!t.kind_read) {
    t.kind_read = true;
    if (S_ISSOCK(st.st_mode) && t.fd.valid()) {
      t.kind.family = IntOption(t.fd.get(), SO_DOMAIN);
      t.kind.type = IntOption(t.fd.get(), SO_TYPE);
      t.kind.protocol = IntOption(t.fd.get(), SO_PROTOCOL);
      t.kind.accepting = IntOption(t.fd.get(), SO_ACCEPTCONN);
    }
  }
  return t.kind;
}

uint64_t FdSource::SocketNetns() const {
  Taken& t = Take();
  if (!t.netns_read) {
    t.netns_read = true;
    if (!t.fd.valid()) {
      t.netns_error = t.error;
    } else {
      // An nsfs fd of the socket's namespace (needs CAP_NET_ADMIN over it).
      UniqueFd ns(::ioctl(t.fd.get(), SIOCGSKNS));
      struct stat nst;
      if (!ns.valid() || ::fstat(ns.get(), &nst) != 0)
        t.netns_error = errno;
      else
        t.netns = nst.st_ino;
    }
  }
  if (!t.netns) errno = t.netns_error;
  return t.netns;
}

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
