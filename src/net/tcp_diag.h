// What NETLINK_SOCK_DIAG (inet_diag) tells about one TCP connection that no
// getsockopt(2) does: whether TCP_MD5SIG keys are set on it (RFC 2385;
// INET_DIAG_MD5SIG, reported to a CAP_NET_ADMIN asker, tcp_diag_get_aux).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
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

// Every TCP socket of cryo's network namespace, by inode, from one inet_diag
// dump per family taken the first time a family is asked about: a dump of
// many connections asks the kernel once instead of once per socket (and the
// tree is frozen meanwhile: its sockets' keys stay as they were). A socket
// the dump did not list (made since) is asked about on its own.
class TcpDiagSnapshot {
 public:
  Result<TcpDiag> Find(int family, uint64_t ino, const std::string& local, const std::string& peer, int state);

 private:
  std::mutex mu_;
  std::map<int, std::map<uint64_t, TcpDiag>> by_family_;
};

}  // namespace cryo
