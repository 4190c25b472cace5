// Probes of network interfaces: TCP repair mode, sock_diag and the BPF
// iterator that counts a UDP socket's queued datagrams.
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "bpf/tcp_options.h"
#include "bpf/udp_queue_count.h"
#include "check/probe_child.h"

namespace cryo::check::probe {

Probe ProbeTcpRepair() {
  Probe p{"tcp-repair", false, false, ""};
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) s.reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Fail(p, Status::FromErrno("socket(SOCK_STREAM)"));
  int one = 1;
  if (::setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &one, sizeof(one)) != 0) return Fail(p, Status::FromErrno("setsockopt TCP_REPAIR"));
  int val = 0;
  socklen_t len = sizeof(val);
  if (::getsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &val, &len) != 0 || val != 1) return Fail(p, Status::FromErrno("getsockopt TCP_REPAIR"));
  p.ok = true;
  p.detail = "TCP_REPAIR set on a TCP socket";
  return p;
}

Probe ProbeSockDiag() {
  Probe p{"sock-diag", false, false, ""};
  int pair[2];  // guarantees at least one unix socket to report
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return Fail(p, Status::FromErrno("socketpair"));
  UniqueFd a(pair[0]), b(pair[1]);
  struct stat st;
  if (::fstat(a.get(), &st) != 0) return Fail(p, Status::FromErrno("fstat socketpair"));
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return Fail(p, Status::FromErrno("socket(NETLINK_SOCK_DIAG)"));
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_NAME;
  struct sockaddr_nl sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != static_cast<ssize_t>(sizeof(msg)))
    return Fail(p, Status::FromErrno("send UNIX_DIAG dump request"));
  size_t count = 0;
  bool own_found = false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kChildTimeoutMs);
  alignas(struct nlmsghdr) char buf[32768];
  for (;;) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    struct pollfd pfd = {nl.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&pfd, 1, left) <= 0) return Fail(p, Status::Error("no complete UNIX_DIAG reply within 1s"));
    ssize_t n = ::recv(nl.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(p, Status::FromErrno("recv UNIX_DIAG reply"));
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<struct nlmsgerr*>(NLMSG_DATA(h));
        return Fail(p, Status::Errno(-e->error, "UNIX_DIAG dump"));
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        if (count == 0) return Fail(p, Status::Error("UNIX_DIAG dump returned no sockets"));
        p.ok = true;
        p.detail = "UNIX_DIAG dump listed " + std::to_string(count) + " unix sockets" + (own_found ? ", our socketpair among them" : "");
        return p;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      ++count;
      auto* d = static_cast<struct unix_diag_msg*>(NLMSG_DATA(h));
      if (d->udiag_ino == st.st_ino) own_found = true;
    }
  }
}

// One datagram sent to a socket of cryo's, counted by the iterator (none
// where loopback is down, as in a fresh network namespace: the socket is
// still found, its queue counted empty).
Probe ProbeBpfIterUdp() {
  Probe p{bpf::kUdpIterFeature, false, false, ""};
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (!s.valid() || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return Fail(p, Status::FromErrno("a UDP socket bound on 127.0.0.1"));
  const uint32_t sent = ::sendto(s.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&a), len) == 1 ? 1 : 0;
  // The kernel's answer, never CRYO_PRETEND_MISSING's: this result is cached
  // for every later `cryo check` (a pretended run wrote "taken as missing" into
  // the shared cache, and a plain `cryo check` after it reported the iterator
  // missing).
  Result<uint32_t> n = bpf::CountUdpDatagramsOfKernel(s.get());
  if (!n.ok()) return Fail(p, n.status());
  if (*n != sent)
    return Fail(p, Status::Error("the iterator counted " + std::to_string(*n) + " datagrams queued, not " + std::to_string(sent)));
  p.ok = true;
  p.detail = std::string("a BPF iterator (iter/udp) counted ") +
             (sent ? "the datagram queued on a UDP socket" : "a UDP socket's empty queue (loopback is down)");
  return p;
}

// A loopback connection of cryo's with TCP_NODELAY set on one end, read by
// the TCP iterator: found, and the option read as getsockopt(2) reads it.
Probe ProbeBpfIterTcp() {
  Probe p{bpf::kTcpIterFeature, false, false, ""};
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  const int one = 1;
  if (!l.valid() || !c.valid() || ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::listen(l.get(), 1) != 0 || ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
      ::connect(c.get(), reinterpret_cast<sockaddr*>(&a), len) != 0)
    return Fail(p, Status::FromErrno("a loopback TCP connection (loopback down?)"));
  uint64_t cookie = 0;
  socklen_t cl = sizeof(cookie);
  if (::getsockopt(c.get(), SOL_SOCKET, SO_COOKIE, &cookie, &cl) != 0) return Fail(p, Status::FromErrno("SO_COOKIE"));
  UniqueFd netns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!netns.valid()) return Fail(p, Status::FromErrno("open /proc/self/ns/net"));
  // The kernel's answer, never CRYO_PRETEND_MISSING's (as for bpf-iter-udp).
  auto all = bpf::ReadTcpOptionsOfKernel(netns.get());
  if (!all.ok()) return Fail(p, all.status());
  auto it = all->find(cookie);
  if (it == all->end()) return Fail(p, Status::Error("the TCP iterator did not meet cryo's own connection"));
  const std::vector<bpf::BulkOption>& opts = bpf::TcpBulkOptions();
  for (size_t k = 0; k < opts.size(); ++k)
    if (opts[k].level == IPPROTO_TCP && opts[k].name == TCP_NODELAY) {
      int v = 0;
      if (it->second.values[k]) std::memcpy(&v, it->second.values[k]->data(), sizeof(v));
      if (v != 1) return Fail(p, Status::Error("the TCP iterator did not read TCP_NODELAY as set"));
    }
  p.ok = true;
  p.detail = "a BPF iterator (iter/tcp) read the options of a TCP connection";
  return p;
}

}  // namespace cryo::check::probe
