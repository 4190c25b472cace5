// NETLINK_SOCK_DIAG: one exchange about one socket (SockDiagQuery, for
// unix_diag.cc and tcp_diag.cc), and sockets other than UNIX found by their
// inode in a dump (inet_diag for UDP, netlink_diag): what no getsockopt(2)
// tells (a UDP socket shut down for writing, a netlink socket's peer and
// groups, whether a netlink dump is running on it).
#pragma once

#include <sys/types.h>

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace cryo {

// Sends `request` (a struct nlmsghdr and its payload, `len` bytes) and reads
// the answer into *answer (its size is the room given); returns the answer's
// length. Bounded: 1 s for the answer. `what` names the query in errors.
// The netlink socket is reused by the next exchange of the same thread once
// this one ended cleanly.
Result<size_t> SockDiagQuery(const void* request, size_t len, std::vector<char>* answer, const std::string& what);

// Sends `req` (a SOCK_DIAG_BY_FAMILY dump request of `len` bytes) and calls
// `each` with every answer until NLMSG_DONE or until it returns true.
// Bounded: 1 s for each batch of answers.
Status SockDiagDump(const void* req, size_t len, const std::string& what,
                    const std::function<bool(const nlmsghdr*)>& each);

// This process's NETLINK_SOCK_DIAG sockets opened and exchanges made (for the
// dump's debug log and the tests).
uint64_t SockDiagSocketsOpened();
uint64_t SockDiagExchanges();

struct InetSocketDiag {
  int state = 0;          // sk_state (TCP_CLOSE; TCP_ESTABLISHED: connected)
  uint8_t shutdown = 0;   // sk_shutdown (INET_DIAG_SHUTDOWN): RCV_SHUTDOWN 1, SEND_SHUTDOWN 2
  uint32_t rqueue = 0;    // bytes of kernel memory the receive queue takes
  uint32_t wqueue = 0;    // the same for the send queue
};

// The socket of `family` (AF_INET, AF_INET6) and `protocol` (IPPROTO_UDP,
// IPPROTO_UDPLITE, ...) whose sockfs inode is `ino`, in cryo's network
// namespace (a dump of every such socket; bounded: 1 s for each answer).
Result<InetSocketDiag> QueryInetSocket(int family, int protocol, uint64_t ino);

// The same for many sockets: every socket of a family and protocol, by
// inode, from one inet_diag dump taken the first time that family and
// protocol is asked about (one per dump instead of one per socket, each of
// which lists every socket of the namespace: quadratic). The tree is held
// while its fds are described, so what the dump tells of its sockets stays
// true; a socket it did not list (bound since) is asked about on its own.
class InetDiagSnapshot {
 public:
  Result<InetSocketDiag> Find(int family, int protocol, uint64_t ino);

 private:
  std::mutex mu_;
  std::map<std::pair<int, int>, std::map<uint64_t, InetSocketDiag>> by_kind_;
};

// inet_diag dumps made by this process (QueryInetSocket and the snapshots;
// for the tests).
uint64_t InetDiagDumps();

struct NetlinkSocketDiag {
  int protocol = 0;
  uint32_t portid = 0;
  uint32_t dst_portid = 0;
  uint32_t dst_group = 0;
  int state = 0;                 // NETLINK_CONNECTED (1) after connect(2)
  std::vector<uint32_t> groups;  // the bitmap of groups it listens to (NETLINK_DIAG_GROUPS)
  uint32_t rmem = 0;             // SK_MEMINFO_RMEM_ALLOC: non-zero while messages wait to be read
  uint64_t flags = 0;            // NDIAG_FLAG_* (a dump running: NDIAG_FLAG_CB_RUNNING)
};

// The netlink socket whose sockfs inode is `ino`.
Result<NetlinkSocketDiag> QueryNetlinkSocket(uint64_t ino);

}  // namespace cryo
