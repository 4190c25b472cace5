// POSIX message queues of the tree's IPC namespace (mq_overview(7)). The
// namespace's queues are the files of its mqueue file system, which cryo
// mounts detached (fsopen(2)/fsmount(2): nothing appears in any mount table)
// from a thread in the namespace: the file system context takes the caller's
// IPC namespace (ipc/mqueue.c mqueue_init_fs_context).
//
// The kernel has no way to read a queued message without taking it, so a
// child of cryo takes every message of a queue and sends it back in the same
// order (mq_receive takes the highest priority first, the oldest first within
// one; sending them back in that order rebuilds the queue). The child ignores
// the signals that end cryo and does not die with it: once it has started,
// the queue gets its messages back even if cryo is killed. Nobody else can
// touch the queue meanwhile: every process of the namespace is of the
// stopped tree (namespaces.cc), and a queue with a notification registered
// (which a send into an empty queue would fire) is refused.
#include <dirent.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ns/ipc_objects.h"

namespace cryo::ns {

namespace {

// The namespace's mqueue file system, mounted nowhere.
Result<UniqueFd> OpenMqueueFs() {
  UniqueFd ctx(static_cast<int>(::syscall(SYS_fsopen, "mqueue", FSOPEN_CLOEXEC)));
  if (!ctx.valid()) return Status::FromErrno("fsopen mqueue");
  if (::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return Status::FromErrno("fsconfig mqueue");
  UniqueFd mnt(static_cast<int>(::syscall(SYS_fsmount, ctx.get(), FSMOUNT_CLOEXEC, 0)));
  if (!mnt.valid()) return Status::FromErrno("fsmount mqueue");
  return mnt;
}

// "QSIZE:129 NOTIFY:2 SIGNO:0 NOTIFY_PID:8260" (ipc/mqueue.c mqueue_read_file).
long NotifyPid(std::string_view text) {
  const size_t at = text.find("NOTIFY_PID:");
  if (at == std::string_view::npos) return -1;
  return std::strtol(std::string(text.substr(at + 11)).c_str(), nullptr, 10);
}

struct QueueMessages {
  std::atomic<uint32_t> out{0};  // 1 once the messages are taken, until they are sent back
  uint32_t count = 0;  // messages taken and sent back
  int32_t err = 0;     // errno of the step that failed, 0 if none
  int32_t step = 0;    // 1 open, 2 receive, 3 send
};

// In the child: takes every message of `name` into `slots` (msgsize + 8
// bytes each: length, priority, data) and sends them back.
void CopyQueue(const std::string& name, long curmsgs, long msgsize, char* slots, QueueMessages* r) {
  const mqd_t q = ::mq_open(name.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (q < 0) {
    r->err = errno;
    r->step = 1;
    return;
  }
  const size_t slot = static_cast<size_t>(msgsize) + 8;
  long taken = 0;
  for (; taken < curmsgs; ++taken) {
    char* s = slots + slot * static_cast<size_t>(taken);
    unsigned prio = 0;
    const ssize_t n = ::mq_receive(q, s + 8, static_cast<size_t>(msgsize), &prio);
    if (n < 0) {
      r->err = errno;
      r->step = 2;
      break;
    }
    const uint32_t len = static_cast<uint32_t>(n);
    std::memcpy(s, &len, 4);
    std::memcpy(s + 4, &prio, 4);
  }
  r->out = 1;
  // Test hook: hold the messages out of the queue for a while, so that the
  // tests can kill cryo exactly then (test_ipcns killed_during_mqueue_copy).
  if (const char* ms = std::getenv("CRYO_TEST_MQUEUE_HOLD_MS")) ::usleep(1000 * std::atoi(ms));
  for (long i = 0; i < taken; ++i) {
    const char* s = slots + slot * static_cast<size_t>(i);
    uint32_t len, prio;
    std::memcpy(&len, s, 4);
    std::memcpy(&prio, s + 4, 4);
    if (::mq_send(q, s + 8, len, prio) != 0 && !r->step) {
      r->err = errno;
      r->step = 3;
    }
  }
  r->count = static_cast<uint32_t>(taken);
  ::close(q);
}

Status CopyMessages(image::PosixMqueue* q, long curmsgs) {
  if (curmsgs == 0) return Status::Ok();
  const size_t slot = static_cast<size_t>(q->msgsize()) + 8;
  const size_t len = sizeof(QueueMessages) + slot * static_cast<size_t>(curmsgs);
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return Status::FromErrno("mmap for the messages of POSIX message queue " + q->name());
  auto* r = new (mem) QueueMessages();
  char* slots = static_cast<char*>(mem) + sizeof(QueueMessages);
  const pid_t child = ::fork();
  if (child < 0) {
    ::munmap(mem, len);
    return Status::FromErrno("fork");
  }
  if (child == 0) {
    // Between taking the messages and sending them back, the queue is empty:
    // the child must finish whatever happens to cryo, a signal to cryo's
    // process group (Ctrl-C, kill -9 -PGID) included.
    DisarmFaultPoints();
    ::setpgid(0, 0);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
    CopyQueue(q->name(), curmsgs, q->msgsize(), slots, r);
    ::_exit(0);
  }
  // Only non-blocking calls in the child: it ends at once; bounded anyway.
  int st = 0;
  const double deadline = Now() + 10;
  pid_t w;
  bool seen_out = false;
  while ((w = ::waitpid(child, &st, WNOHANG)) == 0 && Now() < deadline) {
    if (!seen_out && r->out.load()) {
      seen_out = true;
      FaultPoint();
      LOG_DEBUG("mqueue fault point %llu: the messages of POSIX message queue %s are out of it",
                static_cast<unsigned long long>(FaultPointsPassed()), q->name().c_str());
    }
    ::usleep(200);
  }
  Status out = Status::Ok();
  if (w != child || !WIFEXITED(st))
    out = Status::Error("the process copying POSIX message queue " + q->name() + " did not finish");
  else if (r->step)
    out = Status::Errno(r->err, std::string(r->step == 1 ? "opening" : r->step == 2 ? "receiving from" : "sending back into") +
                                    " POSIX message queue " + q->name());
  else
    for (uint32_t i = 0; i < r->count; ++i) {
      const char* s = slots + slot * i;
      uint32_t n, prio;
      std::memcpy(&n, s, 4);
      std::memcpy(&prio, s + 4, 4);
      image::PosixMqMessage* m = q->add_messages();
      m->set_priority(prio);
      m->set_data(s + 8, n);
    }
  ::munmap(mem, len);
  return out;
}

}  // namespace

Status DumpPosixMqueues(image::IpcNamespace* out) {
  CRYO_ASSIGN_OR_RETURN(UniqueFd mnt, OpenMqueueFs());
  UniqueFd dirfd(::openat(mnt.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd.valid()) return Status::FromErrno("opening the mqueue file system");
  DIR* d = ::fdopendir(dirfd.release());
  if (!d) return Status::FromErrno("fdopendir");
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
  const int dfd = ::dirfd(d);
  Status st = Status::Ok();
  for (const std::string& n : names) {
    const std::string name = "/" + n;
    struct stat sb;
    if (::fstatat(dfd, n.c_str(), &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      st = Status::FromErrno("stat of POSIX message queue " + name);
      break;
    }
    UniqueFd f(::openat(dfd, n.c_str(), O_RDONLY | O_CLOEXEC));
    char text[128] = {};
    if (!f.valid() || ::pread(f.get(), text, sizeof(text) - 1, 0) < 0) {
      st = Status::FromErrno("reading POSIX message queue " + name);
      break;
    }
    const long notify = NotifyPid(text);
    if (notify != 0) {
      st = Status::Error("POSIX message queue " + name + " of the tree's IPC namespace has a notification registered "
                         "(mq_notify(3), by pid " + std::to_string(notify) + "), which is not restored");
      break;
    }
    // An fd of this file system is a queue description (ipc/mqueue.c: the
    // inode's file operations are the queue's).
    struct mq_attr attr;
    if (::mq_getattr(f.get(), &attr) != 0) {
      st = Status::FromErrno("mq_getattr of POSIX message queue " + name);
      break;
    }
    image::PosixMqueue* q = out->add_mqueues();
    q->set_name(name);
    q->set_mode(sb.st_mode & 07777);
    q->set_uid(sb.st_uid);
    q->set_gid(sb.st_gid);
    q->set_maxmsg(attr.mq_maxmsg);
    q->set_msgsize(attr.mq_msgsize);
    st = CopyMessages(q, attr.mq_curmsgs);
    if (!st.ok()) break;
  }
  ::closedir(d);
  return st;
}

Status RestorePosixMqueues(const image::IpcNamespace& ns) {
  for (const image::PosixMqueue& q : ns.mqueues()) {
    const std::string& name = q.name();
    if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos)
      return Status::Error("malformed POSIX message queue name \"" + name + "\" in the image");
    struct mq_attr attr{};
    attr.mq_maxmsg = q.maxmsg();
    attr.mq_msgsize = q.msgsize();
    UniqueFd fd(::mq_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC, 0600, &attr));
    if (!fd.valid()) return Status::FromErrno("creating POSIX message queue " + name);
    // The mode without cryo's umask, and the owner.
    if (::fchmod(fd.get(), q.mode()) != 0 || ::fchown(fd.get(), q.uid(), q.gid()) != 0)
      return Status::FromErrno("owner and mode of POSIX message queue " + name);
    for (int i = 0; i < q.messages_size(); ++i) {
      const image::PosixMqMessage& m = q.messages(i);
      if (::mq_send(fd.get(), m.data().data(), m.data().size(), m.priority()) != 0)
        return Status::FromErrno("sending message " + std::to_string(i) + " into POSIX message queue " + name);
    }
  }
  return Status::Ok();
}

}  // namespace cryo::ns
