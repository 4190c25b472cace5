// Listening stream sockets (TCP over IPv4/IPv6, UNIX stream and seqpacket):
// the dump records the family, type, bound address, backlog, the options that
// differ from a new socket's (socket_options.h), the socket's owner, a UNIX
// socket's file (unix_socket_file.h) and the credentials listen(2) gave it;
// the restore makes a new socket with those options, binds it (in cryo, in
// the fd pool) and makes it listen in the restore helper of the process that
// listened, under its ids, so that clients see the same peer credentials
// (SO_PEERCRED). A TCP socket with a connection waiting to be accepted is
// refused; a UNIX one's connections are connected again (unix_pending.h).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/janitor.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "net/socket_options.h"
#include "net/tcp_migrate.h"
#include "net/unix_diag.h"
#include "net/unix_pending.h"
#include "net/unix_socket_file.h"

namespace cryo {

namespace {

// The target's socket in cryo (FdSource::Dup, borrowed) if it listens; -1
// otherwise.
int GrabListener(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return -1;
  const FdSource::SocketKind& k = s.Socket();
  if (k.accepting != 1) return -1;
  if (k.family != AF_INET && k.family != AF_INET6 && k.family != AF_UNIX) return -1;
  // An MPTCP or SCTP listener is no TCP one (net/other_socket.cc refuses it).
  if (k.family != AF_UNIX && k.protocol != IPPROTO_TCP) return -1;
  return s.Dup();
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

// The credentials listen(2) stored in a UNIX listener (init_peercred), which
// connecting clients get as the listener's SO_PEERCRED and SO_PEERGROUPS.
Status DumpListenCreds(int fd, image::ListenSocket* l, const std::string& what) {
  struct ucred c{};
  socklen_t len = sizeof(c);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) return Status::FromErrno("SO_PEERCRED of " + what);
  l->set_listen_pid(c.pid);
  l->set_listen_uid(c.uid);
  l->set_listen_gid(c.gid);
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      for (size_t i = 0; i < glen / sizeof(gid_t); ++i) l->add_listen_groups(groups[i]);
      return Status::Ok();
    }
    if (errno != ERANGE || glen <= groups.size() * sizeof(gid_t)) return Status::FromErrno("SO_PEERGROUPS of " + what);
    groups.resize(glen / sizeof(gid_t));
  }
}

// listen(2) under the ids `l` records (effective ids and groups of this
// thread only, raw system calls: glibc would change every thread's), then
// back to the restore helper's (root).
Status ListenAs(int fd, const image::ListenSocket& l, int backlog, const std::string& what) {
  std::vector<gid_t> groups(l.listen_groups().begin(), l.listen_groups().end());
  std::vector<gid_t> mine(static_cast<size_t>(std::max(::getgroups(0, nullptr), 0)));
  if (::getgroups(static_cast<int>(mine.size()), mine.data()) < 0) return Status::FromErrno("getgroups");
  const gid_t egid = ::getegid();
  if (syscall(SYS_setgroups, groups.size(), groups.data()) != 0) return Status::FromErrno("setgroups for " + what);
  Status st;
  if (syscall(SYS_setresgid, -1, l.listen_gid(), -1) != 0) st = Status::FromErrno("setresgid for " + what);
  if (st.ok() && syscall(SYS_setresuid, -1, l.listen_uid(), -1) != 0) st = Status::FromErrno("setresuid for " + what);
  if (st.ok() && ::listen(fd, backlog) != 0) st = Status::FromErrno("listen on " + what);
  // Back to root: the saved uid allows it, and the capabilities come back
  // into the effective set (capabilities(7), "Effect of user ID changes").
  if (syscall(SYS_setresuid, -1, 0, -1) != 0 || syscall(SYS_setresgid, -1, egid, -1) != 0 ||
      syscall(SYS_setgroups, mine.size(), mine.data()) != 0)
    return Status::FromErrno("returning to the restore helper's ids after listening on " + what);
  return st;
}

class ListenSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_LISTEN_SOCKET; }
  const char* name() const override { return "listening socket"; }
  const char* feature() const override { return "listen-sockets"; }
  void AddFeatures(const image::Fd& f, std::set<std::string>* features) const override {
    features->insert(feature());
    const image::ListenSocket& l = f.listen_socket();
    if (l.has_file() || l.file_unlinked() || l.options_size() || l.owner_uid() || l.owner_gid() || l.listen_pid())
      features->insert("socket-state");
    if (l.pending_clients_size()) features->insert("unix-pending-connections");
  }
  bool Handles(const FdSource& s) const override { return GrabListener(s) >= 0; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    const int fd = GrabListener(s);  // borrowed (FdSource::Dup)
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    image::ListenSocket* l = out->mutable_listen_socket();
    l->set_family(s.Socket().family);
    l->set_type(s.Socket().type);
    l->set_protocol(s.Socket().protocol);
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return Status::FromErrno("getsockname of " + s.what());
    l->set_address(std::string(reinterpret_cast<const char*>(&addr), len));
    l->set_reuseaddr(IntSocketOption(fd, SOL_SOCKET, SO_REUSEADDR) == 1);
    l->set_reuseport(IntSocketOption(fd, SOL_SOCKET, SO_REUSEPORT) == 1);
    if (l->family() == AF_INET6) l->set_v6only(IntSocketOption(fd, IPPROTO_IPV6, IPV6_V6ONLY) == 1);
    l->set_backlog(SOMAXCONN);
    l->set_owner_uid(s.st.st_uid);
    l->set_owner_gid(s.st.st_gid);
    const std::string what = Describe(*l);
    if (l->family() != AF_UNIX) {
      // For a listener, tcpi_sacked is its backlog (sk_max_ack_backlog, tcp_get_info).
      tcp_info ti{};
      socklen_t tl = sizeof(ti);
      if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0) l->set_backlog(static_cast<int>(ti.tcpi_sacked));
    }
    if (l->family() == AF_UNIX) {
      const std::string& a = l->address();
      const size_t off = offsetof(struct sockaddr_un, sun_path);
      if (a.size() <= off) return Status::Error(s.what() + ": a listening UNIX socket without a name, not supported");
      if (a[off] != '\0' && a[off] != '/')
        return Status::Error(s.what() + ": " + what +
                             " was bound to a relative path, which cryo cannot find again (bind it to an absolute one)");
      CRYO_ASSIGN_OR_RETURN(UnixSocketDiag diag, QueryUnixSocket(s.st.st_ino));
      if (diag.backlog) l->set_backlog(static_cast<int>(diag.backlog));
      if (a[off] == '/') CRYO_RETURN_IF_ERROR(DumpUnixSocketFile(s, diag, l, what));
      CRYO_RETURN_IF_ERROR(DumpListenCreds(fd, l, what));
      CRYO_RETURN_IF_ERROR(DumpPendingConnections(diag, l, s.what() + ": " + what));
    }
    // A listener is readable when a connection waits in its accept queue.
    pollfd p = {fd, POLLIN, 0};
    if (l->family() != AF_UNIX && ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN))
      return Status::Error(s.what() + ": " + what + " has connections waiting to be accepted, which cryo cannot checkpoint yet");
    return DumpSocketOptions(fd, l->family(), l->type(), l->protocol(), what, l->mutable_options());
  }
  // Made and bound in cryo; listen(2) comes in Finish.
  Result<int> Open(const image::Fd& f) const override {
    const image::ListenSocket& l = f.listen_socket();
    const std::string what = Describe(l);
    UniqueFd fd(::socket(l.family(), l.type() | SOCK_CLOEXEC, l.protocol()));
    if (!fd.valid()) return Status::FromErrno("socket for " + what);
    CRYO_RETURN_IF_ERROR(RestoreSocketOptions(fd.get(), l.options(), what));
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
    const size_t off = offsetof(sockaddr_un, sun_path);
    if (l.family() == AF_UNIX && len > off && l.address()[off] != '\0') {
      CRYO_RETURN_IF_ERROR(BindUnixSocketFile(fd.get(), l, what));
    } else if (::bind(fd.get(), addr, len) != 0) {
      // A migration: the address comes with --before-resume (tcp_migrate.h).
      if (errno != EADDRNOTAVAIL || l.family() == AF_UNIX || !TcpNonlocalBindOnRestore())
        return Status::FromErrno("bind to " + what);
      CRYO_ASSIGN_OR_RETURN(const int before, BindNonlocal(fd.get(), l.family(), l.address(), what));
      CRYO_RETURN_IF_ERROR(EndNonlocal(fd.get(), l.family(), before, what));
    }
    // The socket file bind made goes if the restore does not complete.
    const auto* bound = reinterpret_cast<const sockaddr_un*>(addr);
    if (l.family() == AF_UNIX && len > offsetof(sockaddr_un, sun_path) + 1 && bound->sun_path[0] != '\0')
      if (Janitor* j = CurrentJanitor())
        CRYO_RETURN_IF_ERROR(j->WillCreateFile(std::string(bound->sun_path, strnlen(bound->sun_path, len - offsetof(sockaddr_un, sun_path)))));
    if (l.family() != AF_UNIX && !l.reuseaddr() &&
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero)) != 0)
      return Status::FromErrno("SO_REUSEADDR on " + what);
    // The socket's own inode: its owner is the socket's sk_uid (sockfs_setattr).
    if ((l.owner_uid() || l.owner_gid()) && ::fchown(fd.get(), l.owner_uid(), l.owner_gid()) != 0)
      return Status::FromErrno("fchown of " + what);
    if ((f.flags() & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0)
      return Status::FromErrno("O_NONBLOCK on " + what);
    return fd.release();
  }
  // In the restore helper of the process that listened (the fd pool makes it
  // the one to finish the description when it holds it), else of its first
  // holder: its pid is what clients see as the listener's.
  Status Finish(const image::Fd& f) const override {
    const image::ListenSocket& l = f.listen_socket();
    const std::string what = Describe(l);
    const int backlog = l.backlog() > 0 ? l.backlog() : SOMAXCONN;
    if (l.family() == AF_UNIX && l.listen_pid() == ::getpid()) {
      CRYO_RETURN_IF_ERROR(ListenAs(f.fd(), l, backlog, what));
      return ConnectPendingClients(l, what);
    }
    // Connections accepted from it are bound to its port already (restored
    // in repair mode, net/tcp_socket.cc): listen(2) checks the port again
    // (inet_csk_listen_start), and passes with SO_REUSEADDR, put back after.
    const int one = 1, zero = 0;
    const bool reuse = l.family() != AF_UNIX && !l.reuseaddr();
    if (reuse && ::setsockopt(f.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
      return Status::FromErrno("SO_REUSEADDR on " + what);
    if (::listen(f.fd(), backlog) != 0) return Status::FromErrno("listen on " + what);
    if (reuse && ::setsockopt(f.fd(), SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero)) != 0)
      return Status::FromErrno("SO_REUSEADDR on " + what);
    return ConnectPendingClients(l, what);
  }
};

}  // namespace

const FdKindHandler* ListenSocketFdHandler() {
  static const ListenSocketHandler h;
  return &h;
}

}  // namespace cryo
