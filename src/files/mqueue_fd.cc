// POSIX message queue descriptors (mq_open(3), mq_overview(7)). The queue is
// not the tree's: like a file, it lives in its IPC namespace's mqueue file
// system (the host's, or the tree's own one, which ns/ restores first), and
// its description is reopened by the name the fd's link shows, with the
// access mode and O_NONBLOCK. Its messages are the queue's, not the
// description's: a host queue's are the outside world's and are not read
// (reading one would take it). A queue that was unlinked has no name to
// reopen, and a notification (mq_notify(3)) registered by a process of the
// tree is not restored: both are refused.
#include <fcntl.h>
#include <mqueue.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdlib>

#include "base/unique_fd.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

constexpr long kMqueueMagic = 0x19800202;  // linux/magic.h MQUEUE_MAGIC

// NOTIFY_PID of "QSIZE:129 NOTIFY:2 SIGNO:0 NOTIFY_PID:8260" (ipc/mqueue.c
// mqueue_read_file), read with pread: a read would move the shared offset.
Result<long> NotifyPid(int fd) {
  char text[128] = {};
  if (::pread(fd, text, sizeof(text) - 1, 0) < 0) return Status::FromErrno("reading the queue's status");
  const char* at = std::strstr(text, "NOTIFY_PID:");
  if (!at) return Status::Error("the queue's status has no NOTIFY_PID (\"" + std::string(text) + "\")");
  return std::strtol(at + 11, nullptr, 10);
}

class MqueueFd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_MQUEUE; }
  const char* name() const override { return "POSIX message queue"; }
  const char* feature() const override { return "mqueue-fds"; }
  bool Handles(const FdSource& s) const override {
    if (!S_ISREG(s.st.st_mode) || s.link.empty() || s.link[0] != '/') return false;
    struct statfs sf;
    const std::string entry = "/proc/" + std::to_string(s.pid) + "/fd/" + std::to_string(s.fd);
    return ::statfs(entry.c_str(), &sf) == 0 && sf.f_type == kMqueueMagic;
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    if (IsDeletedLink(s.link))
      return Status::Error("is POSIX message queue " + s.link.substr(0, s.link.size() - 10) +
                           ", unlinked (mq_unlink): it has no name to reopen it by");
    UniqueFd dup(s.Grab());
    if (!dup.valid()) return Status::FromErrno("pidfd_getfd of " + s.what());
    struct mq_attr attr;
    if (::mq_getattr(dup.get(), &attr) != 0) return Status::FromErrno("mq_getattr of queue " + s.link);
    CRYO_ASSIGN_OR_RETURN(long notify, NotifyPid(dup.get()));
    if (notify != 0 && (!s.scope || s.scope->pids.count(notify)))
      return Status::Error("is POSIX message queue " + s.link + ", on which pid " + std::to_string(notify) +
                           " registered a notification (mq_notify(3)), which is not restored");
    image::MqueueFd* m = out->mutable_mqueue();
    m->set_name(s.link);
    m->set_maxmsg(attr.mq_maxmsg);
    m->set_msgsize(attr.mq_msgsize);
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const image::MqueueFd& m = f.mqueue();
    const std::string& name = m.name();
    if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos)
      return Status::Error("malformed POSIX message queue name \"" + name + "\" in the image");
    const int flags = static_cast<int>(f.flags()) & (O_ACCMODE | O_NONBLOCK);
    const int fd = ::mq_open(name.c_str(), flags | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return Status::Error("POSIX message queue " + name + " no longer exists");
    if (fd < 0) return Status::FromErrno("mq_open " + name);
    UniqueFd q(fd);
    struct mq_attr attr;
    if (::mq_getattr(fd, &attr) != 0) return Status::FromErrno("mq_getattr " + name);
    if (attr.mq_maxmsg != m.maxmsg() || attr.mq_msgsize != m.msgsize())
      return Status::Error("POSIX message queue " + name + " is another queue now (mq_maxmsg " +
                           std::to_string(attr.mq_maxmsg) + ", mq_msgsize " + std::to_string(attr.mq_msgsize) +
                           "; at the dump " + std::to_string(m.maxmsg()) + ", " + std::to_string(m.msgsize()) + ")");
    return q.release();
  }
};

}  // namespace

const FdKindHandler* MqueueFdHandler() {
  static const MqueueFd h;
  return &h;
}

}  // namespace cryo
