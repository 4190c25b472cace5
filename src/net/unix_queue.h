// The receive queue of a UNIX socket: read at dump without consuming it
// (MSG_PEEK from a SO_PEEK_OFF offset, on cryo's pidfd_getfd duplicate), and
// written again at restore from the socket's peer, one send per message so
// that datagram and seqpacket boundaries are kept.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

using UnixQueue = google::protobuf::RepeatedPtrField<std::string>;

// Reads every message queued on `fd` (type SOCK_STREAM, SOCK_DGRAM or
// SOCK_SEQPACKET; `rcv_shutdown`: shut down for reading) into `out`, leaving the queue and the socket's peek offset
// as they were. Refuses a queue holding file descriptors (SCM_RIGHTS) or
// other control data. `peer_fd` (-1: none) is the socket that sent it all
// (the peer of a pair): for datagrams its SIOCOUTQ must match a replica of the
// queue, else messages cryo cannot see (zero-length ones a MSG_PEEK already
// passed over, which the kernel skips from then on) refuse the dump.
// `senders` (null: not wanted) gets each message's sender name (struct
// sockaddr_un; empty: unnamed).
Status PeekUnixQueue(int fd, int type, bool rcv_shutdown, int peer_fd, const std::string& what, UnixQueue* out,
                     UnixQueue* senders);

// Sends `queue`, message i from senders[i] (or all from senders[0]), to `to`
// (struct sockaddr_un; empty: the senders are connected to the receiver),
// with the senders' send buffers raised for the time (SO_SNDBUFFORCE) so that
// a full queue fits again, then set back.
Status RefillUnixQueue(const std::vector<int>& senders, const UnixQueue& queue, const std::string& to,
                       const std::string& what);

}  // namespace cryo
