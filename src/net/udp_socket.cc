// UDP sockets (IPv4, IPv6, v4-mapped): the dump records the address a socket
// is bound to (also an ephemeral port a first sendto(2) gave it), its peer
// (connect(2)), SO_REUSEADDR/REUSEPORT, IPV6_V6ONLY, the options that differ
// from a new socket's (socket_options.h), multicast memberships
// (udp_multicast.h), the shutdown state (inet_diag: shutdown(SHUT_WR) shows
// nowhere else) and the datagrams waiting to be read with their senders
// (udp_queue.h; their number checked against the kernel's count,
// bpf/udp_queue_count.h). The restore makes the socket in cryo, binds it,
// refills its queue (before connecting it: a connected socket takes only its
// peer's datagrams), joins its groups, connects it and shuts it down again.
// Refused by name: a datagram being built (UDP_CORK, MSG_MORE), UDP
// encapsulation, GSO/GRO (UDP_SEGMENT, UDP_GRO), IPv6 zero checksums,
// datagrams queued on a socket that receives per-datagram ancillary data the
// kernel wrote at arrival (IP_PKTINFO, timestamps, ...), or bound to a device
// other than loopback (the queue is refilled over loopback).
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>

#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "net/sock_diag.h"
#include "net/socket_names.h"
#include "net/socket_options.h"
#include "net/udp_multicast.h"
#include "net/udp_queue.h"

namespace cryo {

namespace {

// The target's UDP socket in cryo (FdSource::Dup, borrowed); -1 otherwise.
int GrabUdp(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return -1;
  const FdSource::SocketKind& k = s.Socket();
  if ((k.family != AF_INET && k.family != AF_INET6) || k.type != SOCK_DGRAM || k.protocol != IPPROTO_UDP) return -1;
  return s.Dup();
}

uint16_t Port(const std::string& addr) {
  uint16_t port = 0;
  if (addr.size() >= 4) std::memcpy(&port, addr.data() + 2, sizeof(port));  // sin_port, sin6_port
  return ntohs(port);
}

std::string Describe(const image::UdpSocket& u) {
  std::string s = std::string(u.family() == AF_INET ? "UDP " : "UDP6 ") + InetAddressName(u.local());
  if (!u.peer().empty()) s += " <-> " + InetAddressName(u.peer());
  return s;
}

struct Flag {
  int level, name;
  const char* label;
};

// UDP's own options (linux/udp.h): state cryo does not restore when set.
constexpr Flag kRefusedUdp[] = {
    {IPPROTO_UDP, 1, "UDP_CORK (a datagram being built)"},
    {IPPROTO_UDP, 100, "UDP_ENCAP (a tunnel endpoint)"},
    {IPPROTO_UDP, 101, "UDP_NO_CHECK6_TX"},
    {IPPROTO_UDP, 102, "UDP_NO_CHECK6_RX"},
    {IPPROTO_UDP, 103, "UDP_SEGMENT (GSO)"},
    {IPPROTO_UDP, 104, "UDP_GRO"},
};

// Options that make recvmsg(2) return what the kernel recorded when the
// datagram arrived (ip(7), ipv6(7), socket(7)): a refilled datagram would
// carry loopback's interface and address, a new arrival time, ...
constexpr Flag kArrivalData[] = {
    {IPPROTO_IP, 6, "IP_RECVOPTS"},           {IPPROTO_IP, 7, "IP_RETOPTS"},
    {IPPROTO_IP, 8, "IP_PKTINFO"},            {IPPROTO_IP, 12, "IP_RECVTTL"},
    {IPPROTO_IP, 13, "IP_RECVTOS"},           {IPPROTO_IP, 20, "IP_RECVORIGDSTADDR"},
    {IPPROTO_IP, 25, "IP_RECVFRAGSIZE"},      {IPPROTO_IPV6, 49, "IPV6_RECVPKTINFO"},
    {IPPROTO_IPV6, 51, "IPV6_RECVHOPLIMIT"},  {IPPROTO_IPV6, 66, "IPV6_RECVTCLASS"},
    {IPPROTO_IPV6, 74, "IPV6_RECVORIGDSTADDR"}, {SOL_SOCKET, 29, "SO_TIMESTAMP"},
    {SOL_SOCKET, 35, "SO_TIMESTAMPNS"},       {SOL_SOCKET, 37, "SO_TIMESTAMPING"},
    {SOL_SOCKET, 40, "SO_RXQ_OVFL"},          {SOL_SOCKET, 75, "SO_RCVMARK"},
};

Status CheckFlags(int fd, int family, const Flag* flags, size_t n, const std::string& why) {
  for (size_t i = 0; i < n; ++i) {
    if (flags[i].level == IPPROTO_IPV6 && family != AF_INET6) continue;
    if (IntSocketOption(fd, flags[i].level, flags[i].name) > 0) return Status::Error(std::string(flags[i].label) + why);
  }
  return Status::Ok();
}

Status DumpUdp(const FdSource& s, int fd, image::UdpSocket* u) {
  u->set_family(IntSocketOption(fd, SOL_SOCKET, SO_DOMAIN));
  u->set_ino(s.st.st_ino);
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return Status::FromErrno("getsockname of " + s.what());
  u->set_local(std::string(reinterpret_cast<const char*>(&a), len));
  len = sizeof(a);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) u->set_peer(std::string(reinterpret_cast<const char*>(&a), len));
  const std::string what = Describe(*u) + (u->peer().empty() ? " (not connected)" : " (connected)");
  CRYO_RETURN_IF_ERROR(
      CheckFlags(fd, u->family(), kRefusedUdp, std::size(kRefusedUdp), " is set on it, which cryo does not restore")
          .Prefixed(what));
  int outq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0) return Status::FromErrno("SIOCOUTQ of " + what);
  if (outq > 0)
    return Status::Error(what + ": " + std::to_string(outq) +
                         " bytes of a datagram being built or sent (MSG_MORE, UDP_CORK), which cryo does not restore");
  // A pending error (sk_err: an ICMP error on a connected socket) or error
  // queue (IP_RECVERR): poll shows either; reading SO_ERROR would clear it.
  pollfd p = {fd, 0, 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & POLLERR))
    return Status::Error(what + " has an error pending (an ICMP error, or its IP_RECVERR error queue), which cryo "
                                "does not restore");
  // A socket that was never bound is in no table inet_diag walks: poll
  // shows its receive side shut down (EPOLLRDHUP; EPOLLHUP for both, in
  // datagram_poll). Only its send side shut down alone is not seen.
  InetSocketDiag diag;
  if (Port(u->local()) != 0) {
    CRYO_ASSIGN_OR_RETURN(diag, s.scope ? s.scope->inet_diag.Find(u->family(), IPPROTO_UDP, s.st.st_ino)
                                         : QueryInetSocket(u->family(), IPPROTO_UDP, s.st.st_ino));
  } else {
    pollfd q = {fd, POLLRDHUP, 0};
    if (::poll(&q, 1, 0) > 0) diag.shutdown = (q.revents & POLLHUP) ? 3 : (q.revents & POLLRDHUP) ? 1 : 0;
  }
  u->set_shutdown(diag.shutdown & 3);
  u->set_reuseaddr(IntSocketOption(fd, SOL_SOCKET, SO_REUSEADDR) == 1);
  u->set_reuseport(IntSocketOption(fd, SOL_SOCKET, SO_REUSEPORT) == 1);
  if (u->family() == AF_INET6) u->set_v6only(IntSocketOption(fd, IPPROTO_IPV6, IPV6_V6ONLY) == 1);
  u->set_owner_uid(s.st.st_uid);
  u->set_owner_gid(s.st.st_gid);
  CRYO_RETURN_IF_ERROR(DumpSocketOptions(fd, u->family(), SOCK_DGRAM, IPPROTO_UDP, what, u->mutable_options()));
  CRYO_RETURN_IF_ERROR(DumpMemberships(fd, u->family(), what, u->mutable_memberships()));
  CRYO_RETURN_IF_ERROR(PeekUdpQueue(fd, what, s.scope && s.scope->udp_queue_unverified, u->mutable_queue()));
  if (u->queue().empty()) return Status::Ok();
  const std::string queued = ": " + std::to_string(u->queue().size()) + " datagrams are queued on it and ";
  CRYO_RETURN_IF_ERROR(CheckFlags(fd, u->family(), kArrivalData, std::size(kArrivalData),
                                  " is set, which makes each carry what the kernel recorded at its arrival (not "
                                  "restored: read the queue before the checkpoint)")
                           .Prefixed(what + queued));
  char dev[IF_NAMESIZE + 1] = {};
  socklen_t dl = sizeof(dev);
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) == 0 && dev[0] && std::string(dev) != "lo")
    return Status::Error(what + queued + "it is bound to device " + dev +
                         " (SO_BINDTODEVICE): cryo refills a queue over loopback, which it would not accept");
  if (Port(u->local()) == 0) return Status::Error(what + queued + "it has no port, which makes no sense");
  return Status::Ok();
}

Status SetInt(int fd, int level, int name, int value, const std::string& what, const char* label) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return Status::FromErrno(std::string(label) + " on " + what);
  return Status::Ok();
}

class UdpSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_UDP_SOCKET; }
  const char* name() const override { return "UDP socket"; }
  const char* feature() const override { return "udp-sockets"; }
  bool Handles(const FdSource& s) const override { return GrabUdp(s) >= 0; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    const int fd = GrabUdp(s);  // borrowed (FdSource::Dup)
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    if (!s.scope) return DumpUdp(s, fd, out->mutable_udp_socket());
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return Status::FromErrno("SO_COOKIE of " + s.what());
    std::lock_guard<std::mutex> guard(s.scope->sockets_mu);
    auto it = s.scope->socket_records.find(cookie);
    if (it != s.scope->socket_records.end()) {
      if (!out->mutable_udp_socket()->ParseFromString(it->second)) return Status::Error("internal: a UDP record read back");
      return Status::Ok();
    }
    CRYO_RETURN_IF_ERROR(DumpUdp(s, fd, out->mutable_udp_socket()));
    s.scope->socket_records[cookie] = out->udp_socket().SerializeAsString();
    return Status::Ok();
  }
  // Made in cryo (the fd pool), complete: bound, queue refilled, connected.
  Result<int> Open(const image::Fd& f) const override {
    const image::UdpSocket& u = f.udp_socket();
    const std::string what = Describe(u);
    UniqueFd fd(::socket(u.family(), SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP));
    if (!fd.valid()) return Status::FromErrno("socket for " + what);
    CRYO_RETURN_IF_ERROR(RestoreSocketOptions(fd.get(), u.options(), what));
    if (u.reuseaddr()) CRYO_RETURN_IF_ERROR(SetInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR"));
    if (u.reuseport()) CRYO_RETURN_IF_ERROR(SetInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, what, "SO_REUSEPORT"));
    if (u.family() == AF_INET6) CRYO_RETURN_IF_ERROR(SetInt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, u.v6only(), what, "IPV6_V6ONLY"));
    if (Port(u.local()) != 0 &&
        ::bind(fd.get(), reinterpret_cast<const sockaddr*>(u.local().data()), static_cast<socklen_t>(u.local().size())) != 0) {
      if (errno == EADDRINUSE)
        return Status::FromErrno("bind of " + what + ": another socket of this machine holds the port (the original "
                                 "process still runs?)");
      return Status::FromErrno("bind of " + what);
    }
    CRYO_RETURN_IF_ERROR(RefillUdpQueue(fd.get(), u.local(), u.queue(), what));
    CRYO_RETURN_IF_ERROR(RestoreMemberships(fd.get(), u.family(), u.memberships(), what));
    if (!u.peer().empty() &&
        ::connect(fd.get(), reinterpret_cast<const sockaddr*>(u.peer().data()), static_cast<socklen_t>(u.peer().size())) != 0)
      return Status::FromErrno("connect of " + what);
    // shutdown(2) of a socket that is not connected sets sk_shutdown and
    // then says ENOTCONN (inet_shutdown).
    static const int kHow[] = {-1, SHUT_RD, SHUT_WR, SHUT_RDWR};
    if (u.shutdown() && ::shutdown(fd.get(), kHow[u.shutdown() & 3]) != 0 && errno != ENOTCONN)
      return Status::FromErrno("shutdown of " + what);
    CRYO_RETURN_IF_ERROR(SetSocketOwnerAndFlags(fd.get(), u.owner_uid(), u.owner_gid(), f.flags(), what));
    return fd.release();
  }
};

}  // namespace

const FdKindHandler* UdpSocketFdHandler() {
  static const UdpSocketHandler h;
  return &h;
}

}  // namespace cryo
