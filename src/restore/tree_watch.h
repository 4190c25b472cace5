// How cryo watches the restore helpers while they rebuild the tree: SIGCHLD
// through a signalfd, the helpers' records on the status pipe, and a guard
// that kills everything half-restored unless released.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "restore/finalize.h"

namespace cryo {

// SIGCHLD blocked and readable from a signalfd while the tree is rebuilt; the
// mask is put back on destruction.
class ChildSignals {
 public:
  Status Open() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (::sigprocmask(SIG_BLOCK, &set, &old_) != 0) return Status::FromErrno("blocking SIGCHLD");
    blocked_ = true;
    fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd_.valid()) return Status::FromErrno("signalfd for SIGCHLD");
    return Status::Ok();
  }
  ~ChildSignals() {
    fd_.reset();
    if (blocked_) ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  // Sleeps until a SIGCHLD, data on `other_fd`, or `timeout_ms`.
  void Wait(int other_fd, int timeout_ms) {
    struct pollfd p[2] = {{fd_.get(), POLLIN, 0}, {other_fd, POLLIN, 0}};
    if (::poll(p, 2, timeout_ms) > 0 && (p[0].revents & POLLIN)) {
      struct signalfd_siginfo si[16];
      while (::read(fd_.get(), si, sizeof(si)) > 0) {
      }
    }
  }

 private:
  sigset_t old_;
  bool blocked_ = false;
  UniqueFd fd_;
};

// Kills everything half-restored unless released: each process of the image
// that cryo traces (so never an unrelated process that reuses a pid).
class TreeGuard {
 public:
  TreeGuard(pid_t root, std::vector<pid_t> pids) : root_(root), pids_(std::move(pids)) {}
  ~TreeGuard();
  void Release() { released_ = true; }

 private:
  pid_t root_;
  std::vector<pid_t> pids_;
  bool released_ = false;
};

// Parses helper records from the status pipe (non-blocking).
class StatusReader {
 public:
  explicit StatusReader(int fd) : fd_(fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }
  // Reads what is available; returns false at EOF.
  bool Poll() {
    char chunk[8192];
    for (;;) {
      ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        continue;
      }
      Parse();
      return !(n == 0);
    }
  }
  std::map<pid_t, ProcessReport> reports;
  std::string error;
  int created = 0;
  int joined = 0;

 private:
  void Parse();
  int fd_;
  std::string buf_;
};

}  // namespace cryo
