#include "net/tcp_diag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "net/sock_diag.h"

namespace cryo {

namespace {

// The address and port of `addr` into an inet_diag id (network order).
void Fill(const std::string& addr, __be16* port, __be32* ip) {
  sa_family_t fam = 0;
  if (addr.size() >= sizeof(fam)) std::memcpy(&fam, addr.data(), sizeof(fam));
  if (fam == AF_INET && addr.size() >= sizeof(sockaddr_in)) {
    sockaddr_in a;
    std::memcpy(&a, addr.data(), sizeof(a));
    *port = a.sin_port;
    std::memcpy(ip, &a.sin_addr, 4);
  } else if (fam == AF_INET6 && addr.size() >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, addr.data(), sizeof(a));
    *port = a.sin6_port;
    std::memcpy(ip, &a.sin6_addr, 16);
  }
}

}  // namespace

Result<TcpDiag> QueryTcpConnection(int family, const std::string& local, const std::string& peer, int state) {
  const std::string what = "INET_DIAG of a TCP connection";
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // one socket (inet_diag_cmd_exact), not a dump
  msg.req.sdiag_family = static_cast<__u8>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = state < 0 ? ~0u : 1u << state;
  // The auxiliary attributes (INET_DIAG_MD5SIG) come with the extensions asked for.
  msg.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  // As a packet from the peer would find it: src is the local end.
  Fill(local, &msg.req.id.idiag_sport, msg.req.id.idiag_src);
  Fill(peer, &msg.req.id.idiag_dport, msg.req.id.idiag_dst);
  msg.req.id.idiag_cookie[0] = msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  thread_local std::vector<char> space(1 << 16);  // not zeroed per query
  CRYO_ASSIGN_OR_RETURN(const size_t got, SockDiagQuery(&msg, sizeof(msg), &space, what));
  char* buf = space.data();
  ssize_t n = static_cast<ssize_t>(got);
  for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      const auto* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
      return Status::Errno(-e->error, what);
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    const auto* d = static_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
    TcpDiag out;
    out.ino = d->idiag_inode;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const struct rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
      if (a->rta_type == INET_DIAG_MD5SIG && RTA_PAYLOAD(a) > 0) out.md5sig = true;
    return out;
  }
  return Status::Error(what + ": no answer for that connection");
}

namespace {

// Every TCP socket of `family` (inet_diag dump, with the auxiliary
// attributes that tell TCP_MD5SIG keys) into *out by inode.
Status DumpTcpSockets(int family, std::map<uint64_t, TcpDiag>* out) {
  const std::string what = "INET_DIAG dump of the TCP sockets";
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<__u8>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  // Every state but those no fd holds (TIME_WAIT and request sockets have
  // no inode).
  constexpr int kTimeWait = 6, kNewSynRecv = 12;  // TCP_TIME_WAIT, TCP_NEW_SYN_RECV (net/tcp_states.h)
  msg.req.idiag_states = ~0u & ~((1u << kTimeWait) | (1u << kNewSynRecv));
  // As for one query: INET_DIAG_MD5SIG comes with INET_DIAG_INFO asked for.
  msg.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  return SockDiagDump(&msg, sizeof(msg), what, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return false;
    const auto* d = static_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
    if (!d->idiag_inode) return false;
    TcpDiag t;
    t.ino = d->idiag_inode;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const struct rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
      if (a->rta_type == INET_DIAG_MD5SIG && RTA_PAYLOAD(a) > 0) t.md5sig = true;
    (*out)[t.ino] = t;
    return false;
  });
}

}  // namespace

Result<TcpDiag> TcpDiagSnapshot::Find(int family, uint64_t ino, const std::string& local, const std::string& peer,
                                      int state) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto fam = by_family_.find(family);
    if (fam == by_family_.end()) {
      std::map<uint64_t, TcpDiag> all;
      CRYO_RETURN_IF_ERROR(DumpTcpSockets(family, &all));
      fam = by_family_.emplace(family, std::move(all)).first;
    }
    if (auto it = fam->second.find(ino); it != fam->second.end()) return it->second;
  }
  return QueryTcpConnection(family, local, peer, state);
}

}  // namespace cryo
