// One UNIX socket as NETLINK_SOCK_DIAG reports it (unix_diag, by the inode of
// the socket): what no getsockopt(2) tells (a listener's backlog, a socket's
// peer, state and shutdown).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace cryo {

struct UnixSocketDiag {
  bool has_file = false;    // bound to a path: the inode the bind created
  uint64_t file_dev = 0;    // as stat(2)'s st_dev (makedev)
  uint64_t file_ino = 0;
  uint32_t queued = 0;      // a listener: connections waiting to be accepted; else bytes
                            // queued (stream, seqpacket: all; datagram: the first message's)
  uint32_t backlog = 0;     // a listener: its listen(2) backlog (sk_max_ack_backlog)
  uint64_t peer_ino = 0;    // the connected peer's inode (UNIX_DIAG_PEER; 0: none or closed)
  int state = 0;            // sk_state (TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN)
  uint8_t shutdown = 0;     // sk_shutdown (UNIX_DIAG_SHUTDOWN): RCV_SHUTDOWN 1, SEND_SHUTDOWN 2
  // A listener: the client end of each connection waiting to be accepted, in
  // accept order (UNIX_DIAG_ICONS: the inode of each embryo's peer; 0 for a
  // client that was closed since, sk_diag_dump_icons).
  std::vector<uint32_t> pending_clients;
};

// Asks the kernel about the socket whose sockfs inode is `ino` (st_ino of an
// fd on it), in cryo's network namespace. Bounded: 1 s for the answer.
Result<UnixSocketDiag> QueryUnixSocket(uint64_t ino);

}  // namespace cryo
