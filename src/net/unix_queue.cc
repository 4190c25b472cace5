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

// Takes the fds an SCM_RIGHTS message installed in cryo into `fds`; whether
// there was other control data (credentials, security labels) or more than
// fitted (MSG_CTRUNC).
bool TakeControl(msghdr* m, std::vector<UniqueFd>* fds) {
  bool other = (m->msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      other = true;
      continue;
    }
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
      fds->emplace_back(fd);
    }
  }
  return other;
}

Status Peek(int fd, int type, bool rcv_shutdown, const std::string& what, UnixQueue* out, UnixQueue* senders,
            std::vector<QueuedFds>* queued_fds) {
  std::vector<char> buf(256 * 1024);
  // SCM_MAX_FD (253) fds per message.
  alignas(cmsghdr) char control[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(64)];
  bool continued = false;  // the last peek stopped inside a message (MSG_TRUNC)
  int offset = 0;          // of the next peek (stream)
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
    std::vector<UniqueFd> fds;
    if (TakeControl(&m, &fds))
      return Status::Error(what + " has credentials or other control data in flight (SCM_CREDENTIALS, "
                                  "SCM_SECURITY) in its receive queue, which cryo cannot restore");
    if (!fds.empty() && !queued_fds)
      return Status::Error(what + " has file descriptors in flight (SCM_RIGHTS) in its receive queue");
    // A stream peek that stops because the buffer is full still returns the
    // fds of the next segment that carries any, however far on
    // (unix_stream_read_generic walks on with nothing left to copy); one that
    // stops by itself ends with the segment carrying the fds it returns.
    // Peeked again from the same offset with room enough.
    if (type == SOCK_STREAM && !fds.empty() && static_cast<size_t>(n) == buf.size()) {
      if (buf.size() >= (256u << 20)) return Status::Error(what + ": more than 256 MiB queued before its fds");
      buf.resize(buf.size() * 2);
      if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &offset, sizeof(offset)) != 0)
        return Status::FromErrno("SO_PEEK_OFF on " + what);
      continue;
    }
    // A socket shut down for reading reads 0 at the end of its queue, for
    // ever; otherwise 0 is a zero-length message (datagram, seqpacket),
    // returned once: the kernel marks it peeked and skips it from then on.
    // What this loses is caught by the SIOCOUTQ check of the caller.
    if (n == 0 && (type == SOCK_STREAM || rcv_shutdown)) return Status::Ok();
    offset += static_cast<int>(n);
    if (continued && !out->empty()) {
      // The rest of a message: its fds came with its first part already.
      out->rbegin()->append(buf.data(), static_cast<size_t>(n));
    } else {
      out->Add()->assign(buf.data(), static_cast<size_t>(n));
      // The sender's name (recvfrom(2)); only the family when it has none.
      const size_t named = m.msg_namelen > offsetof(sockaddr_un, sun_path) ? m.msg_namelen : 0;
      if (senders) senders->Add()->assign(reinterpret_cast<const char*>(&from), named);
      if (!fds.empty()) queued_fds->push_back({out->size() - 1, std::move(fds)});
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

// Sends `m` from `off` on, with `fds` (SCM_RIGHTS; null: none): for a stream
// socket the kernel attaches them to the first segment this makes.
ssize_t SendPart(int sender, const std::string& m, size_t off, const sockaddr* dest, socklen_t dest_len,
                 const std::vector<int>* fds) {
  iovec iov = {const_cast<char*>(m.data()) + off, m.size() - off};
  msghdr h{};
  h.msg_name = const_cast<sockaddr*>(dest);
  h.msg_namelen = dest ? dest_len : 0;
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  std::vector<char> control;
  if (fds && !fds->empty()) {
    control.resize(CMSG_SPACE(fds->size() * sizeof(int)));
    h.msg_control = control.data();
    h.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds->size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds->data(), fds->size() * sizeof(int));
  }
  return ::sendmsg(sender, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace

Status PeekUnixQueue(int fd, int type, bool rcv_shutdown, int peer_fd, const std::string& what, UnixQueue* out,
                     UnixQueue* senders, std::vector<QueuedFds>* fds) {
  // The peek offset is the socket's own: processes sharing it are all
  // stopped, and only one dump peeks at a time.
  static std::mutex mu;
  std::lock_guard<std::mutex> guard(mu);
  const int saved = IntSocketOption(fd, SOL_SOCKET, kSoPeekOff);
  const int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &zero, sizeof(zero)) != 0)
    return Status::FromErrno("SO_PEEK_OFF on " + what);
  Status st = Peek(fd, type, rcv_shutdown, what, out, senders, fds);
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
                       const std::string& what, const std::map<int, std::vector<int>>* fds) {
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
    const std::vector<int>* with = nullptr;  // the fds message i carries
    if (fds && fds->count(i)) with = &fds->at(i);
    for (size_t off = 0;;) {
      const ssize_t n = SendPart(sender, m, off, dest, static_cast<socklen_t>(to.size()), off == 0 ? with : nullptr);
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
