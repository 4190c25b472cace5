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

Result<std::unique_ptr<Connection>> Connection::Connect(const std::string& addr, double timeout_s) {
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
    return std::make_unique<Connection>(std::move(fd), peer, timeout_s, /*sender=*/true);
  }
  return last;
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
  struct pollfd p = {fd_.get(), POLLIN, 0};
  if (sender_ && ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
    Result<Frame> f = Receive(1);
    if (f.ok() && f->type() == FrameType::kError)
      return Status::Error("the receiver " + peer_ + " refused the image: " + f->payload);
    if (f.ok()) return Status::Error(std::string("unexpected ") + FrameTypeName(f->header.type) + " from " + peer_);
    return f.status();
  }
  struct iovec iov[3] = {{const_cast<char*>(header.data()), header.size()},
                         {const_cast<char*>(prefix.data()), prefix.size()},
                         {const_cast<char*>(data.data()), data.size()}};
  int first = 0;
  double deadline = Now() + timeout_s_;
  while (first < 3) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    struct msghdr msg = {};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = static_cast<size_t>(3 - first);
    const ssize_t w = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return Status::FromErrno("send to " + peer_);
      CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLOUT, deadline, "send to " + peer_));
      continue;
    }
    deadline = Now() + timeout_s_;  // progress: the timeout is for silence
    size_t left = static_cast<size_t>(w);
    while (first < 3 && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < 3) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

Status Connection::ReadExact(char* buf, size_t n, double timeout_s) {
  double deadline = Now() + timeout_s;
  while (n > 0) {
    const ssize_t r = ::recv(fd_.get(), buf, n, 0);
    if (r == 0) return Status::Errno(ECONNRESET, "connection closed by " + peer_);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return Status::FromErrno("receive from " + peer_);
      CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLIN, deadline, "receive from " + peer_));
      continue;
    }
    deadline = Now() + timeout_s;
    buf += r;
    n -= static_cast<size_t>(r);
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

Result<std::unique_ptr<Connection>> Listener::Accept(double timeout_s, double frame_timeout_s) {
  CRYO_RETURN_IF_ERROR(WaitFor(fd_.get(), POLLIN, Now() + timeout_s, "waiting for the sender on " + address_));
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  UniqueFd fd(::accept4(fd_.get(), reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("accept on " + address_);
  SetOptions(fd.get());
  return std::make_unique<Connection>(std::move(fd), AddressText(reinterpret_cast<struct sockaddr*>(&ss)),
                                      frame_timeout_s, /*sender=*/false);
}

}  // namespace cryo::stream
