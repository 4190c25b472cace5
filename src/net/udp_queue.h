// The receive queue of a UDP socket: read at dump without consuming it
// (MSG_PEEK from a SO_PEEK_OFF offset, which UDP honours since Linux 4.11,
// on cryo's pidfd_getfd duplicate), and put back at restore by sending each
// datagram again over loopback from its own source address and port: a raw
// socket writes the IP and UDP headers itself (IP_HDRINCL; IPPROTO_RAW on
// IPv6), so the source needs no socket bound to it, may be an address of
// another machine, and the sender that used it may still hold its port. A
// looped-back packet keeps the route the sender looked up (loopback_xmit),
// so no reverse-path check drops a foreign source.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>
#include <sys/types.h>

#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

using UdpQueue = google::protobuf::RepeatedPtrField<image::UdpDatagram>;

// Every datagram queued on `fd` with its sender, oldest first, leaving the
// queue and the socket's peek offset as they were. A non-empty queue is
// checked against the kernel's own count (bpf/udp_queue_count.h): an empty
// datagram already peeked at is passed over by every peek, so more datagrams
// held than seen are refused by name. Without the count (no BPF iterator),
// such a queue is refused unless `unverified_ok` (--udp-queue-unverified).
Status PeekUdpQueue(int fd, const std::string& what, bool unverified_ok, UdpQueue* out);

// Before the tree of `pid` is frozen: loads the program that counts queued
// datagrams exactly (bpf/udp_queue_count.h, once per cryo process) if the
// network namespace of `pid` has a UDP socket, so that a dump that needs the
// count does not spend the load (the kernel's BTF parsed, the program
// verified: milliseconds) with the tree frozen. Without a UDP socket there,
// nothing is loaded (a socket of the tree in another namespace still gets
// its count, loaded then).
void PrepareUdpQueueCount(pid_t pid);

// Sends `queue` to `fd` (bound to `local`, not connected yet: a connected
// socket takes only its peer's datagrams) and checks that each arrived.
Status RefillUdpQueue(int fd, const std::string& local, const UdpQueue& queue, const std::string& what);

}  // namespace cryo
