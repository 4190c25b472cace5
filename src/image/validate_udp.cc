// UDP and netlink sockets (FD_UDP_SOCKET, UdpSocket, net/udp_socket.cc;
// FD_NETLINK_SOCKET, NetlinkSocket, net/netlink_socket.cc).
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <set>

#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

constexpr size_t kMaxQueueBytes = 1ull << 30;

// An inet address: a struct sockaddr_in or sockaddr_in6 of its own size.
std::string AddressProblem(const std::string& a, bool any_family, int family) {
  sa_family_t fam = 0;
  if (a.size() >= sizeof(fam)) std::memcpy(&fam, a.data(), sizeof(fam));
  if (fam != AF_INET && fam != AF_INET6) return "an address of another family";
  if (!any_family && fam != family) return "an address of another family";
  if (a.size() != (fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6))) return "an address of the wrong size";
  return "";
}

std::string OptionsProblem(const google::protobuf::RepeatedPtrField<SocketOption>& options, std::set<int32_t> levels) {
  std::set<std::pair<int32_t, int32_t>> seen;
  for (const SocketOption& o : options)
    if (!levels.count(o.level()) || o.value().empty() || o.value().size() > 64 || !seen.insert({o.level(), o.name()}).second)
      return "socket option " + std::to_string(o.level()) + "/" + std::to_string(o.name()) + " invalid or twice";
  return "";
}

std::string SocketFlagsProblem(const Fd& f) {
  if (f.flags() & ~(O_RDWR | O_NONBLOCK)) return "flags " + Hex(f.flags()) + " a socket cannot have";
  if ((f.flags() & 3) != O_RDWR) return "a socket not open for reading and writing";
  return "";
}

}  // namespace

std::string UdpSocketProblem(const Fd& f) {
  const UdpSocket& u = f.udp_socket();
  if (u.family() != AF_INET && u.family() != AF_INET6) return "UDP socket family unknown";
  if (std::string p = AddressProblem(u.local(), false, u.family()); !p.empty()) return "local address: " + p;
  if (!u.peer().empty())
    if (std::string p = AddressProblem(u.peer(), false, u.family()); !p.empty()) return "peer: " + p;
  if (u.v6only() && u.family() != AF_INET6) return "IPV6_V6ONLY on a socket that is not IPv6";
  if (u.shutdown() > 3) return "shutdown " + std::to_string(u.shutdown()) + " invalid";
  if (u.owner_uid() == UINT32_MAX || u.owner_gid() == UINT32_MAX) return "socket owner -1";
  std::set<int32_t> levels = {SOL_SOCKET, IPPROTO_IP};
  if (u.family() == AF_INET6) levels.insert(IPPROTO_IPV6);
  if (std::string p = OptionsProblem(u.options(), levels); !p.empty()) return p;
  uint16_t port = 0;
  std::memcpy(&port, u.local().data() + 2, sizeof(port));
  size_t total = 0;
  for (const UdpDatagram& d : u.queue()) {
    // An IPv4 datagram's source on an IPv6 socket is v4-mapped (AF_INET6).
    if (std::string p = AddressProblem(d.source(), false, u.family()); !p.empty()) return "queued datagram source: " + p;
    if (d.data().size() > 65535) return "a queued datagram larger than 64 KiB";
    total += d.data().size();
  }
  if (total > kMaxQueueBytes) return "a UDP queue beyond 1 GiB";
  if (!u.queue().empty() && port == 0) return "datagrams queued on a socket without a port";
  for (const MulticastMembership& m : u.memberships()) {
    if (m.ifindex() < 0) return "multicast interface index negative";
    if (std::string p = AddressProblem(m.group(), u.family() == AF_INET6, AF_INET); !p.empty())
      return "multicast group: " + p;
  }
  return SocketFlagsProblem(f);
}

std::string NetlinkSocketProblem(const Fd& f) {
  const NetlinkSocket& n = f.netlink_socket();
  const int p = n.protocol();
  if (p != NETLINK_ROUTE && p != NETLINK_GENERIC && p != NETLINK_SOCK_DIAG && p != NETLINK_KOBJECT_UEVENT)
    return "netlink protocol " + std::to_string(p) + " is none cryo restores";
  if (n.type() != SOCK_RAW && n.type() != SOCK_DGRAM) return "netlink socket type " + std::to_string(n.type()) + " invalid";
  std::set<uint32_t> seen;
  for (uint32_t g : n.groups())
    if (g == 0 || g > 1024 || !seen.insert(g).second) return "netlink group " + std::to_string(g) + " invalid or twice";
  if (!n.connected() && (n.dst_portid() || n.dst_group())) return "a peer without a connection";
  if (n.dst_group() > 32) return "netlink destination group beyond 32";
  if (n.owner_uid() == UINT32_MAX || n.owner_gid() == UINT32_MAX) return "socket owner -1";
  if (std::string q = OptionsProblem(n.options(), {SOL_SOCKET}); !q.empty()) return q;
  for (const SocketOption& o : n.netlink_options())
    if (o.level() != SOL_NETLINK || o.value().size() != sizeof(int) || o.name() < 1 || o.name() > 16)
      return "netlink option " + std::to_string(o.name()) + " invalid";
  return SocketFlagsProblem(f);
}

}  // namespace cryo::image::validate
