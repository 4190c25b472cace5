// Names of sockets for messages, above all refusals: family, type, protocol,
// state, local and peer address, e.g. "UDP 127.0.0.1:5000 <-> 127.0.0.1:6000
// (connected)", "netlink route portid 1234 groups 0x1", "packet (raw)
// ifindex 1 protocol 0x0003".
#pragma once

#include <cstdint>
#include <string>

namespace cryo {

// A struct sockaddr_in or sockaddr_in6 as "1.2.3.4:5" or "[::1]:5" (a
// v4-mapped address stays as it is: "[::ffff:1.2.3.4]:5").
std::string InetAddressName(const std::string& addr);

// "IPv4", "IPv6", "UNIX", "netlink", "packet", ... ("family N" otherwise).
std::string SocketFamilyName(int family);

// "UDP", "UDP-Lite", "ICMP (ping)", "raw IPv4 protocol 17", "MPTCP", ... for
// an inet socket of `type` and `protocol`.
std::string InetKindName(int family, int type, int protocol);

// "route", "generic", "sock_diag", ... for a netlink protocol.
std::string NetlinkProtocolName(int protocol);

// What the socket `fd` (a duplicate of the target's) is, as precisely as
// getsockopt(2), getsockname(2) and getpeername(2) tell: its family, type,
// protocol, state, local and peer address.
std::string DescribeSocket(int fd);

}  // namespace cryo
