// One UNIX socket as NETLINK_SOCK_DIAG reports it (unix_diag, by the inode of
// the socket): what no getsockopt(2) tells about a listener.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "base/status.h"

namespace cryo {

struct UnixSocketDiag {
  bool has_file = false;    // bound to a path: the inode the bind created
  uint64_t file_dev = 0;    // as stat(2)'s st_dev (makedev)
  uint64_t file_ino = 0;
  uint32_t queued = 0;      // a listener: connections waiting to be accepted
  uint32_t backlog = 0;     // a listener: its listen(2) backlog (sk_max_ack_backlog)
};

// Asks the kernel about the socket whose sockfs inode is `ino` (st_ino of an
// fd on it), in cryo's network namespace. Bounded: 1 s for the answer.
Result<UnixSocketDiag> QueryUnixSocket(uint64_t ino);

}  // namespace cryo
