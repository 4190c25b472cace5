#include "net/socket_names.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <cstdio>

#include "net/socket_options.h"

namespace cryo {

std::string TcpStateName(int state);  // tcp_socket.cc

namespace {

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%x", v);
  return buf;
}

std::string TypeName(int type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "datagram";
    case SOCK_RAW: return "raw";
    case SOCK_SEQPACKET: return "seqpacket";
    case SOCK_RDM: return "rdm";
    default: return "type " + std::to_string(type);
  }
}

std::string Name(int fd, bool peer) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (r != 0) return "";
  return std::string(reinterpret_cast<const char*>(&a), std::min<size_t>(len, sizeof(a)));
}

}  // namespace

std::string InetAddressName(const std::string& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.size() >= sizeof(sockaddr_in) && reinterpret_cast<const sockaddr*>(addr.data())->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, addr.data(), sizeof(in));
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (addr.size() >= sizeof(sockaddr_in6) && reinterpret_cast<const sockaddr*>(addr.data())->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr.data(), sizeof(in6));
    ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6.sin6_port));
  }
  return "(no address)";
}

std::string SocketFamilyName(int family) {
  switch (family) {
    case AF_UNIX: return "UNIX";
    case AF_INET: return "IPv4";
    case AF_INET6: return "IPv6";
    case AF_NETLINK: return "netlink";
    case AF_PACKET: return "packet";
    case AF_VSOCK: return "vsock";
    case AF_ALG: return "AF_ALG";
    case AF_XDP: return "AF_XDP";
    case AF_KEY: return "AF_KEY";
    case AF_BLUETOOTH: return "Bluetooth";
    case AF_TIPC: return "TIPC";
    case AF_CAN: return "CAN";
    case AF_RDS: return "RDS";
    case AF_SMC: return "SMC";
    default: return "family " + std::to_string(family);
  }
}

std::string InetKindName(int family, int type, int protocol) {
  const std::string v = family == AF_INET6 ? "6" : "";
  if (protocol == IPPROTO_MPTCP) return "MPTCP" + v;
  if (type == SOCK_STREAM && protocol == IPPROTO_TCP) return "TCP" + v;
  if (type == SOCK_DGRAM && protocol == IPPROTO_UDP) return "UDP" + v;
  if (protocol == IPPROTO_UDPLITE) return "UDP-Lite" + v;
  if (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)) return "ICMP" + v + " (ping)";
  if (protocol == IPPROTO_SCTP) return "SCTP" + v;
  if (type == SOCK_RAW) return "raw " + SocketFamilyName(family) + " protocol " + std::to_string(protocol);
  return SocketFamilyName(family) + " " + TypeName(type) + " protocol " + std::to_string(protocol);
}

std::string NetlinkProtocolName(int protocol) {
  switch (protocol) {
    case NETLINK_ROUTE: return "route";
    case NETLINK_USERSOCK: return "usersock";
    case NETLINK_FIREWALL: return "firewall";
    case NETLINK_SOCK_DIAG: return "sock_diag";
    case NETLINK_NFLOG: return "nflog";
    case NETLINK_XFRM: return "xfrm";
    case NETLINK_SELINUX: return "selinux";
    case NETLINK_ISCSI: return "iscsi";
    case NETLINK_AUDIT: return "audit";
    case NETLINK_FIB_LOOKUP: return "fib_lookup";
    case NETLINK_CONNECTOR: return "connector";
    case NETLINK_NETFILTER: return "netfilter";
    case NETLINK_IP6_FW: return "ip6_fw";
    case NETLINK_DNRTMSG: return "dnrtmsg";
    case NETLINK_KOBJECT_UEVENT: return "kobject_uevent";
    case NETLINK_GENERIC: return "generic";
    case NETLINK_SCSITRANSPORT: return "scsitransport";
    case NETLINK_ECRYPTFS: return "ecryptfs";
    case NETLINK_RDMA: return "rdma";
    case NETLINK_CRYPTO: return "crypto";
    case NETLINK_SMC: return "smc";
    default: return "protocol " + std::to_string(protocol);
  }
}

std::string DescribeSocket(int fd) {
  const int family = IntSocketOption(fd, SOL_SOCKET, SO_DOMAIN);
  const int type = IntSocketOption(fd, SOL_SOCKET, SO_TYPE);
  const int protocol = IntSocketOption(fd, SOL_SOCKET, SO_PROTOCOL);
  const std::string local = Name(fd, false), peer = Name(fd, true);
  if (family == AF_INET || family == AF_INET6) {
    std::string s = InetKindName(family, type, protocol) + " " + InetAddressName(local);
    if (!peer.empty()) s += " <-> " + InetAddressName(peer);
    if (type == SOCK_STREAM) {
      tcp_info ti{};
      socklen_t tl = sizeof(ti);
      if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0) return s + " (" + TcpStateName(ti.tcpi_state) + ")";
      return s;
    }
    return s + (peer.empty() ? " (not connected)" : " (connected)");
  }
  if (family == AF_NETLINK) {
    std::string s = "netlink " + NetlinkProtocolName(protocol) + " (" + TypeName(type) + ")";
    if (local.size() >= sizeof(sockaddr_nl)) {
      sockaddr_nl nl;
      std::memcpy(&nl, local.data(), sizeof(nl));
      s += " portid " + std::to_string(nl.nl_pid) + " groups " + Hex(nl.nl_groups);
    }
    if (peer.size() >= sizeof(sockaddr_nl)) {
      sockaddr_nl nl;
      std::memcpy(&nl, peer.data(), sizeof(nl));
      if (nl.nl_pid || nl.nl_groups) s += " <-> portid " + std::to_string(nl.nl_pid) + " group " + Hex(nl.nl_groups);
    }
    return s;
  }
  if (family == AF_PACKET) {
    std::string s = "packet (" + TypeName(type) + ")";
    if (local.size() >= offsetof(sockaddr_ll, sll_halen)) {
      sockaddr_ll ll{};
      std::memcpy(&ll, local.data(), std::min(local.size(), sizeof(ll)));
      s += " ifindex " + std::to_string(ll.sll_ifindex) + " protocol " + Hex(ntohs(ll.sll_protocol));
    }
    return s;
  }
  return SocketFamilyName(family) + " " + TypeName(type) + " protocol " + std::to_string(protocol);
}

}  // namespace cryo
