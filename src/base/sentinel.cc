#include "base/sentinel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"

namespace cryo {

namespace {

constexpr size_t kMaxRecord = 8192;

bool ReadPid(int fd, pid_t* pid) {
  struct pollfd p = {fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return false;
  ssize_t n;
  while ((n = ::read(fd, pid, sizeof(*pid))) < 0 && errno == EINTR) {
  }
  return n == sizeof(*pid) && *pid > 0;
}

// The sentinel process: alone, then the body.
[[noreturn]] void Run(const std::string& name, int channel, int alive_fd, pid_t cryo, const Sentinel::Body& body) {
  ::setsid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) ::signal(sig, SIG_IGN);
  ::prctl(PR_SET_NAME, name.c_str(), 0, 0, 0);
  // Nothing of cryo's but the channel and stderr: an end of a restore pipe
  // held here would keep a helper waiting, a file of the image open.
  const unsigned lo = static_cast<unsigned>(std::min(channel, alive_fd));
  const unsigned hi = static_cast<unsigned>(std::max(channel, alive_fd));
  if (lo > 3) ::close_range(3, lo - 1, 0);
  if (hi > lo + 1) ::close_range(lo + 1, hi - 1, 0);
  ::close_range(hi + 1, ~0U, 0);
  body(channel, cryo);
  ::_exit(0);
}

}  // namespace

bool ReadSentinelRecord(int channel, SentinelRecord* out) {
  char buf[kMaxRecord + 1];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxSentinelFds)];
  iovec iov = {buf, sizeof(buf)};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  ssize_t n;
  while ((n = ::recvmsg(channel, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n <= 0) return false;
  out->fd.reset();
  out->more_fds.clear();
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(sizeof(int))) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
      if (!out->fd.valid() && out->more_fds.empty())
        out->fd = UniqueFd(fd);
      else
        out->more_fds.emplace_back(fd);
    }
  }
  out->kind = buf[0];
  out->payload.assign(buf + 1, static_cast<size_t>(n) - 1);
  return true;
}

bool SendSentinelRecord(int channel, char kind, const std::string& payload, const int* fds, size_t nfds) {
  if (nfds > kMaxSentinelFds) {
    errno = EINVAL;
    return false;
  }
  std::string rec = kind + payload;
  iovec iov = {rec.data(), rec.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxSentinelFds)] = {};
  if (nfds > 0) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  while ((n = ::sendmsg(channel, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n == static_cast<ssize_t>(rec.size());
}

bool SendSentinelRecord(int channel, char kind, const std::string& payload, int fd) {
  return SendSentinelRecord(channel, kind, payload, &fd, fd >= 0 ? 1 : 0);
}

Result<std::unique_ptr<Sentinel>> Sentinel::Start(const std::string& name, const std::set<pid_t>& avoid, Body body) {
  const pid_t cryo = ::getpid();
  int chan[2], status[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) != 0)
    return Status::FromErrno("socketpair for the " + name);
  if (::pipe2(status, O_CLOEXEC) != 0) {
    ::close(chan[0]);
    ::close(chan[1]);
    return Status::FromErrno("pipe for the " + name);
  }
  // It holds the write end of `status` until it exits.
  const pid_t first = ::fork();
  if (first == 0) {
    ::close(chan[0]);
    ::close(status[0]);
    if (::fork() != 0) ::_exit(0);
    // A pid the restore needs is no sentinel's: move on to another.
    for (int i = 0; i < 64 && avoid.count(::getpid()); ++i)
      if (::fork() != 0) ::_exit(0);
    if (avoid.count(::getpid())) ::_exit(1);
    const pid_t me = ::getpid();
    if (::write(status[1], &me, sizeof(me)) != sizeof(me)) ::_exit(1);
    Run(name, chan[1], status[1], cryo, body);
  }
  ::close(chan[1]);
  ::close(status[1]);
  std::unique_ptr<Sentinel> s(new Sentinel(name, chan[0], status[0]));
  if (first < 0) return Status::FromErrno("fork of the " + name);
  int st;
  while (::waitpid(first, &st, 0) < 0 && errno == EINTR) {
  }
  if (!ReadPid(s->alive_fd_, &s->pid_)) return Status::Error("the " + name + " did not start");
  return s;
}

Status Sentinel::Send(char kind, const std::string& payload, const std::vector<int>& fds) {
  if (fd_ < 0) return Status::Error("internal: the " + name_ + " was hung up on");
  if (payload.size() >= kMaxRecord) return Status::Error("internal: a record for the " + name_ + " is too long");
  if (fds.size() > kMaxSentinelFds) return Status::Error("internal: a record for the " + name_ + " has too many fds");
  if (!SendSentinelRecord(fd_, kind, payload, fds.data(), fds.size()))
    return Status::FromErrno("telling the " + name_ + " (pid " + std::to_string(pid_) + ")");
  return Status::Ok();
}

Status Sentinel::Send(char kind, const std::string& payload, int fd) {
  if (fd_ < 0) return Status::Error("internal: the " + name_ + " was hung up on");
  if (payload.size() >= kMaxRecord) return Status::Error("internal: a record for the " + name_ + " is too long");
  if (!SendSentinelRecord(fd_, kind, payload, fd))
    return Status::FromErrno("telling the " + name_ + " (pid " + std::to_string(pid_) + ")");
  return Status::Ok();
}

void Sentinel::Hangup() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
}

void Sentinel::AwaitExit() {
  if (alive_fd_ < 0) return;
  // Its end of the status pipe closes when it exits: bounded, then it goes on alone.
  const double deadline = Now() + 5;
  char c;
  for (;;) {
    struct pollfd p = {alive_fd_, POLLIN, 0};
    const int left = static_cast<int>((deadline - Now()) * 1000);
    if (left <= 0 || ::poll(&p, 1, left) == 0) break;
    const ssize_t r = ::read(alive_fd_, &c, 1);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
  }
  ::close(alive_fd_);
  alive_fd_ = -1;
}

void Sentinel::Release() {
  Hangup();
  if (alive_fd_ >= 0) ::close(alive_fd_);
  alive_fd_ = -1;
}

Sentinel::~Sentinel() {
  Hangup();
  AwaitExit();
}

}  // namespace cryo
