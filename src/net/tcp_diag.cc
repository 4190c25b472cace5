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
  TcpDiag out;
  CRYO_ASSIGN_OR_RETURN(const bool found, SockDiagQuery(&msg, sizeof(msg), 1 << 16, what, "", [&](const nlmsghdr* h) {
    const auto* d = static_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
    out.ino = d->idiag_inode;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const struct rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
      if (a->rta_type == INET_DIAG_MD5SIG && RTA_PAYLOAD(a) > 0) out.md5sig = true;
    return true;
  }));
  if (!found) return Status::Error(what + ": no answer for that connection");
  return out;
}

}  // namespace cryo
