// Established TCP connections (FD_TCP_SOCKET, TcpSocket, net/tcp_socket.cc)
// and the inventory's network lock.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <set>

#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

// What a restore refills at most per queue (a send or receive buffer is
// limited by net.core.[rw]mem_max, far below).
constexpr uint64_t kMaxQueueBytes = 1ull << 30;

std::string EndpointProblem(const std::string& a, int family) {
  sa_family_t fam = 0;
  if (a.size() >= sizeof(fam)) std::memcpy(&fam, a.data(), sizeof(fam));
  if (fam != family) return "an address of another family";
  if (family == AF_INET && a.size() != sizeof(sockaddr_in)) return "an IPv4 address of the wrong size";
  if (family == AF_INET6 && a.size() != sizeof(sockaddr_in6)) return "an IPv6 address of the wrong size";
  uint16_t port = 0;
  std::memcpy(&port, a.data() + 2, sizeof(port));  // sin_port and sin6_port
  if (port == 0) return "port 0";
  return "";
}

// The state and its FINs (net/tcp_fin.h) agree.
std::string FinProblem(const TcpSocket& t) {
  const uint32_t ours = t.our_fin();  // 0 none, 1 not sent, 2 sent, 3 acknowledged
  bool ok;
  switch (t.state()) {
    case TCP_ESTABLISHED: ok = ours == 0 && !t.peer_fin(); break;
    case TCP_CLOSE_WAIT: ok = ours == 0 && t.peer_fin(); break;
    case TCP_FIN_WAIT1: ok = (ours == 1 || ours == 2) && !t.peer_fin(); break;
    case TCP_FIN_WAIT2: ok = ours == 3 && !t.peer_fin() && t.send_queue().empty(); break;
    case TCP_LAST_ACK:
    case TCP_CLOSING: ok = (ours == 1 || ours == 2) && t.peer_fin(); break;
    default: return "TCP state " + std::to_string(t.state()) + " is none cryo restores";
  }
  if (!ok) return "TCP state " + std::to_string(t.state()) + " and its FINs disagree";
  if (ours == 2 && t.unsent()) return "a FIN sent before the bytes in front of it";
  return "";
}

}  // namespace

std::string TcpSocketProblem(const Fd& f) {
  const TcpSocket& t = f.tcp_socket();
  if (t.family() != AF_INET && t.family() != AF_INET6) return "TCP socket family unknown";
  if (std::string p = EndpointProblem(t.local(), t.family()); !p.empty()) return "local end: " + p;
  if (std::string p = EndpointProblem(t.peer(), t.family()); !p.empty()) return "peer: " + p;
  if (std::string p = FinProblem(t); !p.empty()) return p;
  if (t.send_queue().size() > kMaxQueueBytes || t.recv_queue().size() > kMaxQueueBytes) return "a TCP queue beyond 1 GiB";
  if (t.unsent() > t.send_queue().size()) return "more unsent bytes than the send queue holds";
  if (t.mss() == 0 || t.mss() > 65535) return "MSS " + std::to_string(t.mss()) + " invalid";
  // RFC 7323: a shift count of at most 14.
  if (t.send_wscale() > 14 || t.recv_wscale() > 14 || (!t.window_scaling() && (t.send_wscale() || t.recv_wscale())))
    return "window scale invalid";
  if (t.v6only() && t.family() != AF_INET6) return "IPV6_V6ONLY on a socket that is not IPv6";
  if (t.owner_uid() == UINT32_MAX || t.owner_gid() == UINT32_MAX) return "socket owner -1";
  std::set<std::pair<int32_t, int32_t>> seen;
  for (const SocketOption& o : t.options()) {
    const int32_t l = o.level();
    const bool level_ok = l == SOL_SOCKET || l == IPPROTO_TCP || l == IPPROTO_IP || (l == IPPROTO_IPV6 && t.family() == AF_INET6);
    if (!level_ok || o.value().empty() || o.value().size() > 64 || !seen.insert({l, o.name()}).second)
      return "socket option " + std::to_string(l) + "/" + std::to_string(o.name()) + " invalid or twice";
  }
  if (f.flags() & ~(O_RDWR | O_NONBLOCK)) return "flags " + Hex(f.flags()) + " a socket cannot have";
  if ((f.flags() & 3) != O_RDWR) return "a socket not open for reading and writing";
  return "";
}

std::string NetLockProblem(const Inventory& inv) {
  const std::string& n = inv.net_lock();
  if (n.empty()) return "";
  const std::string prefix = "cryo-lock-";
  if (n.size() <= prefix.size() || n.size() > 64 || n.compare(0, prefix.size(), prefix) != 0)
    return "network lock name " + Printable(n) + " is none cryo makes";
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return "network lock name " + Printable(n) + " is none cryo makes";
  return "";
}

}  // namespace cryo::image::validate
