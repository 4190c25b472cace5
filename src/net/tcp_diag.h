// What NETLINK_SOCK_DIAG (inet_diag) tells about one TCP connection that no
// getsockopt(2) does: whether TCP_MD5SIG keys are set on it (RFC 2385;
// INET_DIAG_MD5SIG, reported to a CAP_NET_ADMIN asker, tcp_diag_get_aux).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace cryo {

struct TcpDiag {
  bool md5sig = false;  // TCP_MD5SIG keys are set
  uint64_t ino = 0;     // the socket's inode (0: no fd holds it)
};

// Asks about the connection from `local` to `peer` (struct sockaddr_in or
// sockaddr_in6 each) in cryo's network namespace, in state `state` (-1: any).
// Bounded: 1 s for the answer.
Result<TcpDiag> QueryTcpConnection(int family, const std::string& local, const std::string& peer, int state);

}  // namespace cryo
