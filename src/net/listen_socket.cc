// Listening stream sockets (TCP over IPv4/IPv6, UNIX stream and seqpacket):
// the dump records the family, type, bound address, backlog and the options
// that decide whether the address can be bound again; the restore makes a new
// socket, binds and listens. A socket with a connection waiting to be
// accepted is refused (the connection cannot be carried over yet), as is
// every other socket (sockets are a later part of cryo).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/janitor.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

int IntOpt(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof(v);
  return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

// A description of the target's socket in cryo (pidfd_getfd), if it listens.
UniqueFd GrabListener(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return UniqueFd();
  UniqueFd fd(s.Grab());
  if (!fd.valid() || IntOpt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN) != 1) return UniqueFd();
  const int family = IntOpt(fd.get(), SOL_SOCKET, SO_DOMAIN);
  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) return UniqueFd();
  return fd;
}

std::string Describe(const image::ListenSocket& l) {
  const std::string& a = l.address();
  if (l.family() == AF_UNIX) {
    const size_t off = offsetof(struct sockaddr_un, sun_path);
    if (a.size() <= off) return "an unnamed UNIX socket";
    if (a[off] == '\0') return "UNIX socket @" + a.substr(off + 1);
    return "UNIX socket " + std::string(a.c_str() + off);
  }
  uint16_t port = 0;
  if (l.family() == AF_INET && a.size() >= sizeof(sockaddr_in))
    port = ntohs(reinterpret_cast<const sockaddr_in*>(a.data())->sin_port);
  if (l.family() == AF_INET6 && a.size() >= sizeof(sockaddr_in6))
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_port);
  return std::string(l.family() == AF_INET ? "TCP" : "TCP6") + " port " + std::to_string(port);
}

class ListenSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_LISTEN_SOCKET; }
  const char* name() const override { return "listening socket"; }
  const char* feature() const override { return "listen-sockets"; }
  bool Handles(const FdSource& s) const override { return GrabListener(s).valid(); }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    UniqueFd fd = GrabListener(s);
    if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + s.what());
    image::ListenSocket* l = out->mutable_listen_socket();
    l->set_family(IntOpt(fd.get(), SOL_SOCKET, SO_DOMAIN));
    l->set_type(IntOpt(fd.get(), SOL_SOCKET, SO_TYPE));
    l->set_protocol(IntOpt(fd.get(), SOL_SOCKET, SO_PROTOCOL));
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return Status::FromErrno("getsockname of " + s.what());
    l->set_address(std::string(reinterpret_cast<const char*>(&addr), len));
    l->set_reuseaddr(IntOpt(fd.get(), SOL_SOCKET, SO_REUSEADDR) == 1);
    l->set_reuseport(IntOpt(fd.get(), SOL_SOCKET, SO_REUSEPORT) == 1);
    if (l->family() == AF_INET6) l->set_v6only(IntOpt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY) == 1);
    l->set_backlog(SOMAXCONN);
    if (l->family() != AF_UNIX) {
      // For a listener, tcpi_sacked is its backlog (sk_max_ack_backlog, tcp_get_info).
      tcp_info ti{};
      socklen_t tl = sizeof(ti);
      if (::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0) l->set_backlog(static_cast<int>(ti.tcpi_sacked));
    }
    if (l->family() == AF_UNIX) {
      const std::string& a = l->address();
      const size_t off = offsetof(struct sockaddr_un, sun_path);
      if (a.size() <= off) return Status::Error(s.what() + ": a listening UNIX socket without a name, not supported");
      if (a[off] != '\0' && a[off] != '/')
        return Status::Error(s.what() + ": " + Describe(*l) +
                             " was bound to a relative path, which cryo cannot find again (bind it to an absolute one)");
    }
    // A listener is readable when a connection waits in its accept queue.
    pollfd p = {fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN))
      return Status::Error(s.what() + ": " + Describe(*l) +
                           " has connections waiting to be accepted, which cryo cannot checkpoint yet");
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const image::ListenSocket& l = f.listen_socket();
    const std::string what = Describe(l);
    UniqueFd fd(::socket(l.family(), l.type() | SOCK_CLOEXEC, l.protocol()));
    if (!fd.valid()) return Status::FromErrno("socket for " + what);
    const int one = 1, zero = 0;
    // TCP: bind even while connections the original accepted linger in
    // TIME_WAIT on that port; the socket's own value is put back after bind.
    if (l.family() != AF_UNIX && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
      return Status::FromErrno("SO_REUSEADDR on " + what);
    if (l.reuseport() && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      return Status::FromErrno("SO_REUSEPORT on " + what);
    if (l.family() == AF_INET6 &&
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, l.v6only() ? &one : &zero, sizeof(one)) != 0)
      return Status::FromErrno("IPV6_V6ONLY on " + what);
    const auto* addr = reinterpret_cast<const sockaddr*>(l.address().data());
    const auto len = static_cast<socklen_t>(l.address().size());
    if (::bind(fd.get(), addr, len) != 0) {
      // A UNIX socket's path outlives its listener: replace it if nobody
      // listens on it any more (connect(2) is refused).
      const auto* un = reinterpret_cast<const sockaddr_un*>(addr);
      const bool named = l.family() == AF_UNIX && len > offsetof(sockaddr_un, sun_path) && un->sun_path[0] != '\0';
      struct stat st;
      if (errno != EADDRINUSE || !named || ::lstat(un->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return Status::FromErrno("bind to " + what);
      UniqueFd probe(::socket(AF_UNIX, l.type() | SOCK_CLOEXEC, 0));
      if (probe.valid() && ::connect(probe.get(), addr, len) == 0)
        return Status::Error("bind to " + what + ": another process listens on it");
      if (::unlink(un->sun_path) != 0 || ::bind(fd.get(), addr, len) != 0) return Status::FromErrno("bind to " + what);
    }
    // The socket file bind made goes if the restore does not complete.
    const auto* bound = reinterpret_cast<const sockaddr_un*>(addr);
    if (l.family() == AF_UNIX && len > offsetof(sockaddr_un, sun_path) + 1 && bound->sun_path[0] != '\0')
      if (Janitor* j = CurrentJanitor())
        CRYO_RETURN_IF_ERROR(j->WillCreateFile(std::string(bound->sun_path, strnlen(bound->sun_path, len - offsetof(sockaddr_un, sun_path)))));
    if (l.family() != AF_UNIX && !l.reuseaddr() &&
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero)) != 0)
      return Status::FromErrno("SO_REUSEADDR on " + what);
    if (::listen(fd.get(), l.backlog() > 0 ? l.backlog() : SOMAXCONN) != 0) return Status::FromErrno("listen on " + what);
    if ((f.flags() & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0)
      return Status::FromErrno("O_NONBLOCK on " + what);
    return fd.release();
  }
};

}  // namespace

const FdKindHandler* ListenSocketFdHandler() {
  static const ListenSocketHandler h;
  return &h;
}

}  // namespace cryo
