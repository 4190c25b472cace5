// The receive queue of a UNIX socket: read at dump without consuming it
// (MSG_PEEK from a SO_PEEK_OFF offset, on cryo's pidfd_getfd duplicate), and
// written again at restore from the socket's peer, one send per message so
// that datagram and seqpacket boundaries are kept.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace cryo {

using UnixQueue = google::protobuf::RepeatedPtrField<std::string>;

// The fds one queued message carries (SCM_RIGHTS), received into cryo by a
// peek (scm_fp_dup: the peeker gets its own fds on the same open files).
struct QueuedFds {
  int message = 0;  // index into the queue
  std::vector<UniqueFd> fds;
};

// Reads every message queued on `fd` (type SOCK_STREAM, SOCK_DGRAM or
// SOCK_SEQPACKET; `rcv_shutdown`: shut down for reading) into `out`, leaving the queue and the socket's peek offset
// as they were. File descriptors in flight (SCM_RIGHTS) go to `fds` with the
// message they travel with (null: refused); other control data is refused. `peer_fd` (-1: none) is the socket that sent it all
// (the peer of a pair): for datagrams its SIOCOUTQ must match a replica of the
// queue, else messages cryo cannot see (zero-length ones a MSG_PEEK already
// passed over, which the kernel skips from then on) refuse the dump.
// `senders` (null: not wanted) gets each message's sender name (struct
// sockaddr_un; empty: unnamed).
Status PeekUnixQueue(int fd, int type, bool rcv_shutdown, int peer_fd, const std::string& what, UnixQueue* out,
                     UnixQueue* senders, std::vector<QueuedFds>* fds = nullptr);

// Sends `queue`, message i from senders[i] (or all from senders[0]), to `to`
// (struct sockaddr_un; empty: the senders are connected to the receiver),
// with the senders' send buffers raised for the time (SO_SNDBUFFORCE) so that
// a full queue fits again, then set back. `fds` (null: none): message index
// -> the fds sent with it (SCM_RIGHTS).
Status RefillUnixQueue(const std::vector<int>& senders, const UnixQueue& queue, const std::string& to,
                       const std::string& what, const std::map<int, std::vector<int>>* fds = nullptr);

}  // namespace cryo
