#include "net/tcp_migrate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "base/unique_fd.h"
#include "net/net_lock.h"

namespace cryo {

std::string TcpConnectionName(const image::TcpSocket& t);  // tcp_socket.cc

namespace {

std::atomic<bool> nonlocal_bind{false};

// IP_TRANSPARENT or IPV6_TRANSPARENT: the level and name of `family`'s.
std::pair<int, int> TransparentOption(int family) {
  return family == AF_INET6 ? std::pair{static_cast<int>(IPPROTO_IPV6), 75 /* IPV6_TRANSPARENT */}
                            : std::pair{static_cast<int>(IPPROTO_IP), 19 /* IP_TRANSPARENT */};
}

std::string AddressText(const std::string& addr) {
  const InetEndpoint e = ParseInetEndpoint(addr);
  return e.ip.empty() ? "(an address of no known family)" : e.ip;
}

}  // namespace

void SetTcpNonlocalBindOnRestore(bool on) { nonlocal_bind = on; }
bool TcpNonlocalBindOnRestore() { return nonlocal_bind; }

Result<int> BindNonlocal(int fd, int family, const std::string& local, const std::string& what) {
  const auto [level, name] = TransparentOption(family);
  int before = 0;
  socklen_t len = sizeof(before);
  if (::getsockopt(fd, level, name, &before, &len) != 0) return Status::FromErrno("IP_TRANSPARENT of " + what);
  const int on = 1;
  if (::setsockopt(fd, level, name, &on, sizeof(on)) != 0)
    return Status::FromErrno(what + ": its address " + AddressText(local) +
                             " is not on this host, and IP_TRANSPARENT (to bind it before it comes) failed");
  if (::bind(fd, reinterpret_cast<const sockaddr*>(local.data()), static_cast<socklen_t>(local.size())) != 0)
    return Status::FromErrno("bind of " + what + " (IP_TRANSPARENT: its address " + AddressText(local) +
                             " is not on this host yet)");
  return before;
}

Status EndNonlocal(int fd, int family, int before, const std::string& what) {
  const auto [level, name] = TransparentOption(family);
  if (::setsockopt(fd, level, name, &before, sizeof(before)) != 0)
    return Status::FromErrno("IP_TRANSPARENT back off on " + what);
  return Status::Ok();
}

Status CheckAddressHere(const std::string& local, const std::string& what) {
  sa_family_t family = 0;
  if (local.size() >= sizeof(family)) std::memcpy(&family, local.data(), sizeof(family));
  // A UDP socket connected to the address (no packet is sent): the route to
  // an address of this host is a local one, whose source is the address
  // itself (its preferred source, net/ipv4/route.c); to any other, another
  // address, or none. (A bind probe would be fooled by ip_nonlocal_bind.)
  std::string probe = local;
  if (family == AF_INET && probe.size() >= sizeof(sockaddr_in)) {
    reinterpret_cast<sockaddr_in*>(probe.data())->sin_port = htons(9);
  } else if (family == AF_INET6 && probe.size() >= sizeof(sockaddr_in6)) {
    reinterpret_cast<sockaddr_in6*>(probe.data())->sin6_port = htons(9);
  } else {
    return Status::Error("internal: " + what + " has a local address of no known family");
  }
  UniqueFd s(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Status::FromErrno("socket to probe the address of " + what);
  bool here = false;
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(probe.data()), static_cast<socklen_t>(probe.size())) == 0) {
    sockaddr_storage got{};
    socklen_t len = sizeof(got);
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&got), &len) != 0)
      return Status::FromErrno("probing the address of " + what);
    if (family == AF_INET)
      here = reinterpret_cast<const sockaddr_in*>(&got)->sin_addr.s_addr ==
             reinterpret_cast<const sockaddr_in*>(probe.data())->sin_addr.s_addr;
    else
      here = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&got)->sin6_addr,
                         &reinterpret_cast<const sockaddr_in6*>(probe.data())->sin6_addr, sizeof(in6_addr)) == 0;
  }
  if (here) return Status::Ok();
  return Status::Error(what + ": its local address " + AddressText(local) +
                       " is not on this host when the tree would resume, so the peer's packets would not reach it "
                       "(and once the source's lock is gone, the source would reset the connection): move the "
                       "address here before the tree resumes, e.g. with page-server --before-resume CMD");
}

Status CheckMigratedAddresses(const image::LoadedImage& img, bool hook) {
  const auto& f = img.inventory.features();
  if (hook || std::find(f.begin(), f.end(), "net-ns") != f.end()) return Status::Ok();
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& fd : p.fds.fds()) {
      if (fd.kind() != image::FD_TCP_SOCKET) continue;
      const std::string what =
          "pid " + std::to_string(pid) + " fd " + std::to_string(fd.fd()) + ": " + TcpConnectionName(fd.tcp_socket());
      Status s = CheckAddressHere(fd.tcp_socket().local(), what);
      if (!s.ok())
        return Status::Error(what + ": its local address " + AddressText(fd.tcp_socket().local()) +
                             " is not on this host, and no --before-resume command will "
                             "move it here before the tree resumes: the tree's peers could not reach it (give "
                             "page-server --before-resume CMD, or move the address first)");
    }
  return Status::Ok();
}

Status HoldLockForMigration(const image::LoadedImage& img) {
  const std::string& lock = img.inventory.net_lock();
  const auto& f = img.inventory.features();
  if (lock.empty() || std::find(f.begin(), f.end(), "net-ns") != f.end()) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(const bool here, NetLockExists(lock));
  if (here) return Status::Ok();
  std::vector<LockedConnection> conns;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& fd : p.fds.fds())
      if (fd.kind() == image::FD_TCP_SOCKET) conns.push_back({fd.tcp_socket().local(), fd.tcp_socket().peer()});
  return RunNft(NetLockScript(lock, conns) + "delete chain inet " + lock + " dumping\n")
      .Prefixed("network lock " + lock + " (made here for the migrated connections)");
}

}  // namespace cryo
