#include "files/fd_table.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "files/fd_owner.h"
#include "files/fd_pool.h"
#include "files/file_locks.h"
#include "net/socket_netns.h"
#include "proc/proc.h"

namespace cryo {

std::string DescribeFdTarget(const std::string& link) {
  if (StartsWith(link, "pipe:")) return "a pipe";
  if (StartsWith(link, "socket:")) return "a socket";
  if (StartsWith(link, "anon_inode:")) {
    std::string k = link.substr(11);
    if (k.size() >= 2 && k.front() == '[' && k.back() == ']') k = k.substr(1, k.size() - 2);
    // Kinds a real program may hold, named so that a refusal says what it is.
    static const std::pair<const char*, const char*> kKnown[] = {
        {"fanotify", "a fanotify group"},
        {"io_uring", "an io_uring instance"},
        {"userfaultfd", "a userfaultfd"},
        {"bpf-map", "a BPF map"},
        {"bpf-prog", "a BPF program"},
        {"bpf_link", "a BPF link"},
        {"bpf-link", "a BPF link"},
        {"perf_event", "a perf_event fd"},
        {"pidfd", "a pidfd"},
        {"eventfd", "an eventfd"},
        {"timerfd", "a timerfd"},
        {"signalfd", "a signalfd"},
        {"eventpoll", "an epoll instance"},
        {"inotify", "an inotify instance"},
        {"secretmem", "a memfd_secret area"},
        {"kvm-vm", "a KVM virtual machine"},
        {"kvm-vcpu", "a KVM vCPU"},
        {"sync_file", "a sync_file"},
        {"dmabuf", "a DMA buffer"},
    };
    for (const auto& [name, what] : kKnown)
      if (k == name || StartsWith(k, std::string(name) + ":")) return std::string(what) + " (" + link + ")";
    return "an anonymous-inode file of kind \"" + k + "\" (" + link + ")";
  }
  if (StartsWith(link, "/dev/pts/") || StartsWith(link, "/dev/tty") || link == "/dev/ptmx")
    return "a terminal (" + link + ")";
  if (StartsWith(link, "/memfd:")) return "a memfd (" + link + ")";
  // A dma-buf's file is named "dmabuf:NAME" (dmabuf_dname, drivers/dma-buf).
  if (StartsWith(link, "/dmabuf:")) return "a DMA buffer (" + link + ")";
  if (link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0) return "an unlinked file (" + link + ")";
  return link;
}

Status DescribeFd(FdSource& src, image::FdTable* table, std::set<std::string>* features) {
  const std::string path = "/proc/" + std::to_string(src.pid) + "/fd/" + std::to_string(src.fd);
  CRYO_ASSIGN_OR_RETURN(src.link, ReadLink(path));
  CRYO_ASSIGN_OR_RETURN(src.info, proc::ReadFdInfo(src.pid, src.fd));
  if (::stat(path.c_str(), &src.st) != 0) return Status::FromErrno("stat " + src.what());
  // Before its handler: a socket of another namespace than its process's
  // would be restored in the wrong one (net/socket_netns.h).
  if (S_ISSOCK(src.st.st_mode) && src.pidfd >= 0) CRYO_RETURN_IF_ERROR(CheckSocketNetns(src));
  const FdKindHandler* handler = nullptr;
  for (const FdKindHandler* h : FdKindHandlers())
    if (h->Handles(src)) {
      handler = h;
      break;
    }
  if (!handler)
    return Status::Error(src.what() + " is " + DescribeFdTarget(src.link) + ", which is not supported yet" +
                         (StartsWith(DescribeFdTarget(src.link), "a terminal")
                              ? " (if it is the terminal of the shell the process runs in, use --shell-job)"
                              : ""));
  image::Fd* f = table->add_fds();
  f->set_fd(src.fd);
  f->set_kind(handler->kind());
  f->set_flags(src.info.flags & ~static_cast<uint32_t>(O_CLOEXEC));
  f->set_cloexec((src.info.flags & O_CLOEXEC) != 0);
  f->set_pos(src.info.pos);
  // Identity of the open file, for finding shared descriptions (file_sharing.h).
  f->mutable_file()->set_dev(src.st.st_dev);
  f->mutable_file()->set_ino(src.st.st_ino);
  if (Status st = handler->Dump(src, f); !st.ok()) {
    // A handler whose message names the fd already ("pid N fd M: ...") is
    // not prefixed a second time.
    if (StartsWith(st.message(), src.what() + ":") || StartsWith(st.message(), src.what() + " ")) return st;
    return st.Prefixed(src.what() + " (" + handler->name() + ")");
  }
  handler->AddFeatures(*f, features);
  CRYO_RETURN_IF_ERROR(DumpFdLocks(src, f));
  CRYO_RETURN_IF_ERROR(DumpFdOwner(src, f, &src.info));  // the audit uses what it read
  if (f->has_owner() || f->signal()) features->insert("fd-owner");
  return Status::Ok();
}

Status DumpFdTable(pid_t pid, image::FdTable* table, std::set<std::string>* features, bool shell_job,
                   const DumpScope* scope, std::vector<proc::FdInfo>* infos) {
  CRYO_ASSIGN_OR_RETURN(std::vector<int> fds, proc::ListFds(pid));
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return Status::FromErrno("pidfd_open pid " + std::to_string(pid));
  // The process's network namespace, for the check of each socket's
  // (net/socket_netns.h): the tree is frozen, it stays that one. Unreadable:
  // each socket's check reads it again and says why.
  struct stat netns{};
  if (::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &netns) != 0) netns.st_ino = 0;
  for (int fd : fds) {
    FdSource src;
    src.pid = pid;
    src.fd = fd;
    src.pidfd = pidfd.get();
    src.shell_job = shell_job;
    src.process_netns = netns.st_ino;
    src.scope = scope;
    if (scope) src.tree = &scope->all_tasks;
    CRYO_RETURN_IF_ERROR(DescribeFd(src, table, features));
    if (infos) infos->push_back(std::move(src.info));
  }
  if (scope) CRYO_RETURN_IF_ERROR(CheckProcessLocks(pid, *table, *scope));
  return Status::Ok();
}

int MaxFd(const image::FdTable& table) {
  int max = -1;
  for (const image::Fd& f : table.fds()) max = std::max(max, f.fd());
  return max;
}

uint64_t RestoreFdsNeeded(const std::vector<const image::FdTable*>& tables, uint64_t in_flight) {
  constexpr uint64_t kMargin = 64;  // cryo's own: log, image files, netlink, pipes to helpers
  int max_fd = 2;
  uint64_t fds = in_flight, tcp = 0, pipes = 0;
  for (const image::FdTable* t : tables) {
    max_fd = std::max(max_fd, MaxFd(*t));
    for (const image::Fd& f : t->fds()) {
      fds += 1;
      tcp += f.kind() == image::FD_TCP_SOCKET;
      pipes += f.kind() == image::FD_PIPE || f.kind() == image::FD_FIFO;
    }
  }
  // The pool's fds are numbered from above the highest fd of the image
  // (F_DUPFD): the highest is below the limit.
  const uint64_t top = static_cast<uint64_t>(max_fd) + 1 + fds + kMargin;
  // The TCP duplicates and the pipes' ends take the lowest free numbers:
  // what counts for them is how many fds are open at once.
  const uint64_t open = fds + tcp + pipes + kMargin;
  return std::max(top, open);
}

namespace {

// A pidfd, made here because its process must exist (files/pidfd.cc): once per
// description (dups share it; the dump refuses one shared by fd tables).
Result<int> OpenPidfd(const image::Fd& f, int above, std::map<uint64_t, int>* made) {
  const uint64_t key = f.file_id() ? f.file_id() : (1ull << 63) | static_cast<uint64_t>(f.fd());
  if (auto it = made->find(key); it != made->end()) return it->second;
  CRYO_ASSIGN_OR_RETURN(int fd, PidfdHandler()->Open(f));
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, above);
  ::close(fd);
  if (moved < 0) return Status::FromErrno("moving a pidfd out of the image's fd numbers");
  (*made)[key] = moved;
  return moved;
}

}  // namespace

Status RestoreFdTable(pid_t pid, const image::FdTable& table, const FdPool& pool, const std::vector<pid_t>& users) {
  std::map<uint64_t, int> pidfds;
  const int above = MaxFd(table) + 1;
  for (const image::Fd& f : table.fds()) {
    const std::string what = "fd " + std::to_string(f.fd());
    if (f.kind() == image::FD_PIDFD) {
      Result<int> from = OpenPidfd(f, above, &pidfds);
      if (!from.ok()) return from.status().Prefixed(what + " (pidfd)");
      if (::dup2(*from, f.fd()) < 0) return Status::FromErrno("dup2 for " + what);
      if (f.cloexec() && ::fcntl(f.fd(), F_SETFD, FD_CLOEXEC) != 0) return Status::FromErrno("F_SETFD on " + what);
      continue;
    }
    const int from = pool.FdFor(pid, f);
    if (from < 0) return Status::Error(what + " has no open file description in the pool");
    if (::dup2(from, f.fd()) < 0) return Status::FromErrno("dup2 for " + what);
    if (f.cloexec() && ::fcntl(f.fd(), F_SETFD, FD_CLOEXEC) != 0) return Status::FromErrno("F_SETFD on " + what);
  }
  for (const auto& [id, fd] : pidfds) ::close(fd);
  std::set<uint64_t> finished;
  for (const image::Fd& f : table.fds()) {
    const pid_t first = pool.FirstHolder(pid, f);
    if (users.empty() ? first != pid : std::find(users.begin(), users.end(), first) == users.end()) continue;
    // Each description once: dups in this process share it too.
    if (f.file_id() && !finished.insert(f.file_id()).second) continue;
    const std::string what = "fd " + std::to_string(f.fd());
    if (const FdKindHandler* h = HandlerFor(f.kind())) CRYO_RETURN_IF_ERROR(h->Finish(f).Prefixed(what));
    CRYO_RETURN_IF_ERROR(RestoreAsync(f));
  }
  return Status::Ok();
}

}  // namespace cryo
