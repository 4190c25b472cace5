// pidfds (pidfd_open(2), clone(2) CLONE_PIDFD): fdinfo "Pid:" names the
// process in the PID namespace of the /proc cryo reads, which is the tree's
// (a tree in a namespace of its own is dumped from inside it, ns/tree_pidns.h):
// the pid the restore gives the process back. A pidfd is opened again once the
// whole tree exists (fd_table.cc RestoreFdTable), with pidfd_open(2) and the
// same flags. A pidfd of a process that exited and was reaped ("Pid: -1") is
// remade on a short-lived child that exits the same way and is reaped: the
// program then sees what it saw (poll: readable; waitid: ECHILD; pidfd_send_
// signal: ESRCH; PIDFD_GET_INFO: the same exit status).
#include <fcntl.h>
#include <signal.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "base/exit_like.h"
#include "base/parse_number.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "files/file_sharing.h"

namespace cryo {

namespace {

// include/uapi/linux/pidfd.h (Linux 6.13+); Debian's headers predate it.
struct PidfdInfo {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
  uint32_t coredump_mask;
  uint32_t spare;
};
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);
constexpr uint64_t kPidfdInfoExit = 1ull << 3;  // Linux 6.15+
// PIDFD_THREAD is O_EXCL (include/uapi/linux/pidfd.h, Linux 6.9+); fdinfo
// "flags" shows it.
constexpr uint32_t kPidfdThread = O_EXCL;

Status Refuse(const FdSource& s, const std::string& why) {
  return Status::Error(s.what() + " is a pidfd " + why);
}

// The wait status of the reaped process `dup` refers to, when the kernel keeps it.
Status ReadExitStatus(const FdSource& s, int dup, image::PidfdState* out) {
  PidfdInfo info;
  std::memset(&info, 0, sizeof(info));
  info.mask = kPidfdInfoExit;
  // Before Linux 6.15 the exit status of a reaped process is not kept: the
  // program cannot see it either (ENOTTY before 6.13, ESRCH after).
  if (::ioctl(dup, kPidfdGetInfo, &info) != 0 || !(info.mask & kPidfdInfoExit)) return Status::Ok();
  if (info.exit_code & 0x80)
    return Refuse(s, "of a process that dumped core and was reaped: its exit status (core dumped) cannot be made "
                     "again; not restored (close the pidfd)");
  out->set_has_exit_status(true);
  out->set_exit_status(info.exit_code);
  return Status::Ok();
}

// A pidfd of a child that exits with `st` and is reaped; `flags` for pidfd_open.
Result<int> ReapedPidfd(const image::PidfdState& st, int flags) {
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0) return Status::FromErrno("pipe for a pidfd of a reaped process");
  UniqueFd r(gate[0]), w(gate[1]);
  // exit_signal 0: no SIGCHLD is left pending for the restored process.
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  const long child = syscall(SYS_clone3, &args, sizeof(args));
  if (child < 0) return Status::FromErrno("clone3 of a process for a pidfd of a reaped process");
  if (child == 0) {
    w.reset();
    char byte;
    while (::read(r.get(), &byte, 1) < 0 && errno == EINTR) {
    }
    ExitLike(st.exit_status());
  }
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(child), flags));
  const int saved = errno;
  w.reset();  // the child exits
  siginfo_t info;
  while (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | __WALL) != 0 && errno == EINTR) {
  }
  errno = saved;
  if (fd < 0) return Status::FromErrno("pidfd_open of a process made for a pidfd of a reaped process");
  return fd;
}

class Pidfd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_PIDFD; }
  const char* name() const override { return "pidfd"; }
  const char* feature() const override { return "pidfds"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:[pidfd]"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    image::PidfdState* st = out->mutable_pidfd();
    auto pid_line = s.info.fields.find("Pid");
    int64_t pid = 0;
    if (pid_line == s.info.fields.end() || !ParseNumber(Trim(pid_line->second), &pid))
      return Refuse(s, "whose fdinfo has no readable Pid line");
    const bool thread = (s.info.flags & kPidfdThread) != 0;
    if (pid == -1) {
      UniqueFd dup(s.Grab());
      if (!dup.valid()) return Status::FromErrno("pidfd_getfd of " + s.what());
      return ReadExitStatus(s, dup.get(), st);
    }
    // 0: the process lives in a PID namespace the tree's /proc does not see.
    if (pid == 0)
      return Refuse(s, "of a process outside the tree's PID namespace: not restored (dump that process with the "
                       "tree, or close the pidfd)");
    const pid_t target = static_cast<pid_t>(pid);
    if (s.scope) {
      const bool process = s.scope->pids.count(target) || (s.scope->all_tasks.count(target) && !s.scope->tids.count(target));
      if (thread && !process && s.scope->tids.count(target))
        return Refuse(s, "of thread " + std::to_string(target) + " (PIDFD_THREAD), which is not its process's main "
                         "thread: threads are made again after the fds, so it is not restored yet");
      if (!process)
        return Refuse(s, "of " + NamePid(target) + ", outside the tree: a restored pidfd could only name another "
                         "process; not restored (dump that process with the tree, or close the pidfd)");
    }
    st->set_pid(target);
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const int flags = static_cast<int>(f.flags() & (O_NONBLOCK | kPidfdThread));
    const image::PidfdState& st = f.pidfd();
    if (!st.pid()) return ReapedPidfd(st, flags);
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, st.pid(), flags));
    if (fd < 0) return Status::FromErrno("pidfd_open of pid " + std::to_string(st.pid()));
    return fd;
  }
};

}  // namespace

Status CheckPidfdSharing(const std::vector<ProcessFds>& tables, const std::map<pid_t, pid_t>& table_of) {
  std::map<uint64_t, std::pair<pid_t, int>> first;  // description -> its first holder's pid, fd
  for (const ProcessFds& t : tables)
    for (const image::Fd& f : t.table->fds()) {
      if (f.kind() != image::FD_PIDFD || !f.file_id()) continue;
      auto [it, fresh] = first.try_emplace(f.file_id(), t.pid, f.fd());
      if (fresh) continue;
      auto table = [&](pid_t p) {
        auto o = table_of.find(p);
        return o == table_of.end() ? p : o->second;
      };
      const auto [other, other_fd] = it->second;
      if (table(other) == table(t.pid)) continue;
      return Status::Error("pid " + std::to_string(t.pid) + " fd " + std::to_string(f.fd()) + " and pid " +
                           std::to_string(other) + " fd " + std::to_string(other_fd) +
                           " share one pidfd description (inherited across fork or passed): each would get a "
                           "pidfd of its own at restore; not restored yet (close it in all but one process)");
    }
  return Status::Ok();
}

const FdKindHandler* PidfdHandler() {
  static const Pidfd h;
  return &h;
}

}  // namespace cryo
