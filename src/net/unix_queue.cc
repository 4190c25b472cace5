#include "net/unix_queue.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "base/unique_fd.h"
#include "net/socket_options.h"

namespace cryo {

namespace {

constexpr int kSoPeekOff = 42, kSoSndbufForce = 32;

// Closes the fds an SCM_RIGHTS message installed in cryo; whether there was any control data.
bool DropControl(msghdr* m) {
  bool any = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    any = true;
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
        ::close(fd);
      }
    }
  }
  return any;
}

Status Peek(int fd, int type, bool rcv_shutdown, const std::string& what, UnixQueue* out, UnixQueue* senders) {
  std::vector<char> buf(256 * 1024);
  alignas(cmsghdr) char control[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(64)];
  bool continued = false;  // the last peek stopped inside a message (MSG_TRUNC)
  for (;;) {
    iovec iov = {buf.data(), buf.size()};
    msghdr m{};
    sockaddr_un from{};
    m.msg_name = &from;
    m.msg_namelen = sizeof(from);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
    if (n < 0) return Status::FromErrno("peeking at the queue of " + what);
    if (DropControl(&m) || (m.msg_flags & MSG_CTRUNC))
      return Status::Error(what + " has file descriptors or credentials in flight (SCM_RIGHTS, SCM_CREDENTIALS) in "
                                  "its receive queue, which cryo cannot restore yet");
    // A socket shut down for reading reads 0 at the end of its queue, for
    // ever; otherwise 0 is a zero-length message (datagram, seqpacket),
    // returned once: the kernel marks it peeked and skips it from then on.
    // What this loses is caught by the SIOCOUTQ check of the caller.
    if (n == 0 && (type == SOCK_STREAM || rcv_shutdown)) return Status::Ok();
    if (continued && !out->empty()) {
      out->rbegin()->append(buf.data(), static_cast<size_t>(n));
    } else {
      out->Add()->assign(buf.data(), static_cast<size_t>(n));
      // The sender's name (recvfrom(2)); only the family when it has none.
      const size_t named = m.msg_namelen > offsetof(sockaddr_un, sun_path) ? m.msg_namelen : 0;
      if (senders) senders->Add()->assign(reinterpret_cast<const char*>(&from), named);
    }
    continued = type != SOCK_STREAM && (m.msg_flags & MSG_TRUNC);
    if (out->size() > 1000000) return Status::Error(what + ": more than a million messages queued");
  }
}

// The bytes of kernel memory `queue` takes once sent on a new pair of `type`
// (SIOCOUTQ of the sender: sk_wmem_alloc, each message's truesize).
Result<int> ReplicaOutq(int type, const UnixQueue& queue, const std::string& what) {
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return Status::FromErrno("socketpair for " + what);
  UniqueFd a(sv[0]), b(sv[1]);
  CRYO_RETURN_IF_ERROR(RefillUnixQueue({b.get()}, queue, "", what));
  int outq = 0;
  if (::ioctl(b.get(), TIOCOUTQ, &outq) != 0) return Status::FromErrno("SIOCOUTQ of a replica of " + what);
  return outq;
}

}  // namespace

Status PeekUnixQueue(int fd, int type, bool rcv_shutdown, int peer_fd, const std::string& what, UnixQueue* out,
                     UnixQueue* senders) {
  // The peek offset is the socket's own: processes sharing it are all
  // stopped, and only one dump peeks at a time.
  static std::mutex mu;
  std::lock_guard<std::mutex> guard(mu);
  const int saved = IntSocketOption(fd, SOL_SOCKET, kSoPeekOff);
  const int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &zero, sizeof(zero)) != 0)
    return Status::FromErrno("SO_PEEK_OFF on " + what);
  Status st = Peek(fd, type, rcv_shutdown, what, out, senders);
  if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &saved, sizeof(saved)) != 0 && st.ok())
    st = Status::FromErrno("setting SO_PEEK_OFF of " + what + " back");
  CRYO_RETURN_IF_ERROR(st);
  if (type == SOCK_STREAM || peer_fd < 0) return Status::Ok();
  int outq = 0;
  if (::ioctl(peer_fd, TIOCOUTQ, &outq) != 0) return Status::FromErrno("SIOCOUTQ of the peer of " + what);
  CRYO_ASSIGN_OR_RETURN(int replica, ReplicaOutq(type, *out, what));
  if (replica != outq)
    return Status::Error(what + ": its queue holds messages cryo cannot read (" + std::to_string(out->size()) +
                         " messages take " + std::to_string(replica) + " bytes, the sender has " +
                         std::to_string(outq) +
                         " in flight: zero-length messages a MSG_PEEK already passed over, or messages its peer "
                         "sent to another socket)");
  return Status::Ok();
}

Status RefillUnixQueue(const std::vector<int>& senders, const UnixQueue& queue, const std::string& to,
                       const std::string& what) {
  if (queue.empty()) return Status::Ok();
  if (senders.size() != 1 && senders.size() != static_cast<size_t>(queue.size()))
    return Status::Error("the queue of " + what + ": " + std::to_string(senders.size()) + " senders for " +
                         std::to_string(queue.size()) + " messages");
  size_t total = 0;
  for (const std::string& m : queue) total += m.size() + 1024;
  std::map<int, int> saved;  // sender -> its SO_SNDBUF
  const int big = static_cast<int>(std::min<size_t>(total * 2 + (1 << 20), 1u << 30));
  for (int s : senders) {
    if (saved.count(s)) continue;
    saved[s] = IntSocketOption(s, SOL_SOCKET, SO_SNDBUF);
    if (::setsockopt(s, SOL_SOCKET, kSoSndbufForce, &big, sizeof(big)) != 0)
      return Status::FromErrno("SO_SNDBUFFORCE for the queue of " + what);
  }
  const auto* dest = to.empty() ? nullptr : reinterpret_cast<const sockaddr*>(to.data());
  for (int i = 0; i < queue.size(); ++i) {
    const std::string& m = queue[i];
    const int sender = senders.size() == 1 ? senders[0] : senders[static_cast<size_t>(i)];
    for (size_t off = 0;;) {
      const ssize_t n = ::sendto(sender, m.data() + off, m.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL, dest,
                                 static_cast<socklen_t>(to.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("refilling the queue of " + what + " (message " + std::to_string(i) + ")");
      off += static_cast<size_t>(n);
      if (off >= m.size()) break;
    }
  }
  // getsockopt shows twice what was set (socket(7)): set half back.
  for (const auto& [s, value] : saved) {
    const int half = value / 2;
    if (value > 0 && ::setsockopt(s, SOL_SOCKET, kSoSndbufForce, &half, sizeof(half)) != 0)
      return Status::FromErrno("setting SO_SNDBUF of a sender to " + what + " back");
  }
  return Status::Ok();
}

}  // namespace cryo
