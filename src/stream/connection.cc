#include "stream/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <memory>

#include "base/clock.h"
#include "base/interrupt.h"

namespace cryo::stream {
namespace {

// Waits until `fd` has `events`, at most until `deadline` (Now()).
Status WaitFor(int fd, short events, double deadline, const std::string& what) {
  for (;;) {
    if (const int sig = InterruptSignal())
      return Status::Error(what + ": interrupted by SIG" + sigabbrev_np(sig));
    const double left = deadline - Now();
    if (left <= 0) return Status::Errno(ETIMEDOUT, what + ": no progress for the whole timeout");
    struct pollfd p = {fd, events, 0};
    const int ms = static_cast<int>(std::min(left * 1000 + 1, 1000.0));  // signals seen within a second
    const int r = ::poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) return Status::FromErrno(what + ": poll");
    if (r > 0) return Status::Ok();
  }
}

std::string AddressText(const struct sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

Result<struct addrinfo*> Resolve(const std::string& addr, bool passive) {
  std::string host, port;
  CRYO_RETURN_IF_ERROR(SplitHostPort(addr, &host, &port));
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  struct addrinfo* res = nullptr;
  const int r = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (r != 0) return Status::Error("address " + addr + ": " + gai_strerror(r));
  return res;
}

void SetOptions(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // the last frames and the ACK go at once
}

}  // namespace

Status SplitHostPort(const std::string& text, std::string* host, std::string* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return Status::Error("address \"" + text + "\" has no port: give ADDR:PORT");
  *host = text.substr(0, colon);
  *port = text.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  for (char c : *port)
    if (c < '0' || c > '9') return Status::Error("address \"" + text + "\": the port must be a number");
  if (port->size() > 5 || std::stoi(*port) > 65535) return Status::Error("address \"" + text + "\": port out of range");
  return Status::Ok();
}

Connection::~Connection() = default;

Result<std::unique_ptr<Connection>> Connection::Connect(const std::string& addr, double timeout_s,
                                                        std::shared_ptr<const TlsContext> tls) {
  CRYO_ASSIGN_OR_RETURN(struct addrinfo * res, Resolve(addr, false));
  std::unique_ptr<struct addrinfo, void (*)(struct addrinfo*)> guard(res, freeaddrinfo);
  Status last = Status::Error("address " + addr + ": nothing to connect to");
  const double deadline = Now() + timeout_s;
  for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = Status::FromErrno("socket");
      continue;
    }
    const std::string peer = AddressText(ai->ai_addr);
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = Status::FromErrno("connect to " + peer);
        continue;
      }
      Status w = WaitFor(fd.get(), POLLOUT, deadline, "connect to " + peer);
      if (!w.ok()) {
        last = w;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = Status::Errno(err, "connect to " + peer);
        continue;
      }
    }
    SetOptions(fd.get());
    auto conn = std::make_unique<Connection>(std::move(fd), peer, timeout_s, /*sender=*/true);
    if (tls) CRYO_RETURN_IF_ERROR(conn->StartTls(tls));
    return conn;
  }
  return last;
}

Status Connection::StartTls(std::shared_ptr<const TlsContext> tls) {
  tls_ctx_ = tls;
  CRYO_ASSIGN_OR_RETURN(tls_, tls->NewSession(peer_));
  for (;;) {
    Result<bool> done = tls_->Handshake();
    CRYO_RETURN_IF_ERROR(FlushTls());  // the next flight, or the alert that says why not
    if (!done.ok()) {
      // The peer reads the alert before it sees the connection close (what
      // it sent meanwhile is drained: no reset discards the alert).
      CloseGracefully(1);
      return done.status();
    }
    if (*done) return Status::Ok();
    char buf[16384];
    Result<size_t> n = RawRecv(buf, sizeof(buf), timeout_s_);
    if (!n.ok() || *n == 0)
      return Status::Error("TLS with " + peer_ + ": the handshake ended: " +
                           (n.ok() ? std::string("the peer closed the connection") : n.status().ToString()) + " (" +
                           tls->Describe() + "; does the peer use TLS with the same kind of authentication? its "
                           "own messages say why it refused)");
    tls_->Feed(buf, *n);
  }
}

Status Connection::FlushTls() {
  const std::string out = tls_->TakeOutput();
  return RawSend(out.data(), out.size());
}

Status Connection::RawSend(const char* data, size_t n) {
  struct iovec iov = {const_cast<char*>(data), n};
  return RawSendv(&iov, 1);
}

Status Connection::RawSendv(struct iovec* iov, int count) {
  int first = 0;
  double deadline = Now() + timeout_s_;
  while (first < count) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    struct msghdr msg = {};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = static_cast<size_t>(count - first);
    const ssize_t w = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return Status::FromErrno("send to " + peer_);
      CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLOUT, deadline, "send to " + peer_));
      continue;
    }
    deadline = Now() + timeout_s_;  // progress: the timeout is for silence
    size_t left = static_cast<size_t>(w);
    while (first < count && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < count) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

Result<size_t> Connection::RawRecv(char* buf, size_t n, double timeout_s) {
  const double deadline = Now() + timeout_s;
  for (;;) {
    const ssize_t r = ::recv(fd_.get(), buf, n, 0);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Status::FromErrno("receive from " + peer_);
    CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLIN, deadline, "receive from " + peer_));
  }
}

// Has the receiver sent a frame (an ERROR) the sender has not read? Never waits.
Result<bool> Connection::IncomingFrame() {
  struct pollfd p = {fd_.get(), POLLIN, 0};
  if (!tls_) return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
  char buf[16384];
  for (;;) {
    const ssize_t r = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (r == 0) return true;  // closed: the receive says so
    if (r < 0) break;
    tls_->Feed(buf, static_cast<size_t>(r));
  }
  if (!tls_->HasBuffered()) return false;
  return tls_->HasPlaintext();
}

Result<bool> Connection::Readable() {
  if (!tls_) {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && p.revents != 0;  // POLLERR, POLLHUP: the receive says what
  }
  return IncomingFrame();
}

Status Connection::Send(FrameType type, uint32_t file_id, std::string_view prefix, std::string_view data) {
  std::string header(kFrameHeaderSize, '\0');
  EncodeFrameHeader({static_cast<uint32_t>(type), file_id, static_cast<uint32_t>(prefix.size() + data.size())},
                    reinterpret_cast<uint8_t*>(header.data()));
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  Status s = SendLocked(header, prefix, data);
  if (!s.ok()) failed_ = s;
  return s;
}

Status Connection::SendLocked(const std::string& header, std::string_view prefix, std::string_view data) {
  // Did the receiver refuse something? It says so in a frame, then stops reading.
  if (sender_) {
    CRYO_ASSIGN_OR_RETURN(bool incoming, IncomingFrame());
    if (incoming) {
      Result<Frame> f = Receive(1);
      if (f.ok() && f->type() == FrameType::kError)
        return Status::Error("the receiver " + peer_ + " refused the image: " + f->payload);
      if (f.ok()) return Status::Error(std::string("unexpected ") + FrameTypeName(f->header.type) + " from " + peer_);
      return f.status();
    }
  }
  if (tls_) {
    // Into the session's memory, then onto the socket (TLS records of at most 16 KiB).
    CRYO_RETURN_IF_ERROR(tls_->Write(header.data(), header.size()));
    CRYO_RETURN_IF_ERROR(tls_->Write(prefix.data(), prefix.size()));
    CRYO_RETURN_IF_ERROR(tls_->Write(data.data(), data.size()));
    return FlushTls();
  }
  struct iovec iov[3] = {{const_cast<char*>(header.data()), header.size()},
                         {const_cast<char*>(prefix.data()), prefix.size()},
                         {const_cast<char*>(data.data()), data.size()}};
  return RawSendv(iov, 3);
}

Status Connection::ReadExact(char* buf, size_t n, double timeout_s) {
  while (tls_ && n > 0) {
    bool need_input = false;
    CRYO_ASSIGN_OR_RETURN(size_t got, tls_->Read(buf, n, &need_input));
    buf += got;
    n -= got;
    if (got > 0) continue;
    if (!need_input) return Status::Errno(ECONNRESET, "connection closed by " + peer_ + " (TLS close_notify)");
    CRYO_RETURN_IF_ERROR(FlushTls());
    char raw[65536];
    CRYO_ASSIGN_OR_RETURN(size_t r, RawRecv(raw, sizeof(raw), timeout_s));
    if (r == 0) return Status::Errno(ECONNRESET, "connection closed by " + peer_);
    tls_->Feed(raw, r);
  }
  while (n > 0) {
    CRYO_ASSIGN_OR_RETURN(size_t r, RawRecv(buf, n, timeout_s));
    if (r == 0) return Status::Errno(ECONNRESET, "connection closed by " + peer_);
    buf += r;
    n -= r;
  }
  return Status::Ok();
}

Result<Frame> Connection::Receive(double timeout_s) {
  uint8_t hdr[kFrameHeaderSize];
  CRYO_RETURN_IF_ERROR(ReadExact(reinterpret_cast<char*>(hdr), sizeof(hdr), timeout_s));
  Frame f;
  CRYO_RETURN_IF_ERROR(DecodeFrameHeader(hdr, &f.header).Prefixed("from " + peer_));
  f.payload.resize(f.header.length);
  CRYO_RETURN_IF_ERROR(ReadExact(f.payload.data(), f.payload.size(), timeout_s));
  return f;
}

void Connection::CloseGracefully(double linger_s) {
  if (tls_) {
    tls_->Shutdown();
    const std::string out = tls_->TakeOutput();
    (void)::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::shutdown(fd_.get(), SHUT_WR);
  const double deadline = Now() + linger_s;
  char buf[65536];
  for (;;) {
    const ssize_t r = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (r == 0) break;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN) break;
    if (r < 0 && !WaitFor(fd_.get(), POLLIN, deadline, "drain").ok()) break;
  }
  fd_.reset();
}

Result<Listener> Listener::Listen(const std::string& addr) {
  CRYO_ASSIGN_OR_RETURN(struct addrinfo * res, Resolve(addr, true));
  std::unique_ptr<struct addrinfo, void (*)(struct addrinfo*)> guard(res, freeaddrinfo);
  Status last = Status::Error("address " + addr + ": nothing to listen on");
  for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = Status::FromErrno("socket");
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 1) != 0) {
      last = Status::FromErrno("listen on " + addr);
      continue;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (::getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), &len) != 0)
      return Status::FromErrno("getsockname");
    Listener l;
    l.fd_ = std::move(fd);
    l.address_ = AddressText(reinterpret_cast<struct sockaddr*>(&ss));
    return l;
  }
  return last;
}

Result<std::unique_ptr<Connection>> Listener::Accept(double timeout_s, double frame_timeout_s,
                                                     std::shared_ptr<const TlsContext> tls) {
  CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLIN, Now() + timeout_s, "waiting for the sender on " + address_));
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  UniqueFd fd(::accept4(fd_.get(), reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("accept on " + address_);
  SetOptions(fd.get());
  auto conn = std::make_unique<Connection>(std::move(fd), AddressText(reinterpret_cast<struct sockaddr*>(&ss)),
                                           frame_timeout_s, /*sender=*/false);
  if (tls) CRYO_RETURN_IF_ERROR(conn->StartTls(tls));
  return conn;
}

}  // namespace cryo::stream
