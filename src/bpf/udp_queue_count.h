// The exact number of datagrams the kernel holds for a UDP socket, counted by
// a BPF iterator over the UDP sockets of its network namespace (iter/udp,
// BPF_TRACE_ITER, Linux 5.9; needs the kernel's BTF and CAP_BPF +
// CAP_PERFMON). Peeking cannot count them: an empty datagram already peeked
// at is passed over by every later peek (net/core/datagram.c,
// __skb_try_recv_from_queue: `_off >= skb->len && (_off || skb->peeked)`),
// so only the kernel's own queue lengths tell whether a peek saw everything.
//
// The program is a dozen instructions written here by hand (no BPF compiler
// in the build); the offsets it reads are looked up in the running kernel's
// BTF (libbpf), so it follows the kernel's layout or is not loaded at all.
// For each socket it writes one record: the socket's cookie (SO_COOKIE) and
// the lengths of its two receive queues, sk_receive_queue and udp_sock's
// reader_queue (__skb_recv_udp moves the first into the second).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo::bpf {

// CRYO_PRETEND_MISSING and `cryo check` name the feature so.
inline constexpr char kUdpIterFeature[] = "bpf-iter-udp";

// One record of the iterator's output.
struct UdpQueueLengths {
  uint64_t cookie = 0;           // sk_cookie: set for the sockets cryo asked SO_COOKIE of, else 0
  uint32_t receive_queue = 0;    // sk->sk_receive_queue.qlen
  uint32_t reader_queue = 0;     // udp_sk(sk)->reader_queue.qlen
};

// The records of the iterator's output `bytes` (a whole number of them).
Result<std::vector<UdpQueueLengths>> ParseUdpQueueRecords(std::string_view bytes);

// Ok when the iterator can be used here; else why not ("no BTF ...",
// "CRYO_PRETEND_MISSING names bpf-iter-udp", the verifier's refusal, ...).
// Loads the program on the first call and keeps it for the process.
Status UdpQueueCountAvailable();

// The datagrams queued on the UDP socket `fd` (a duplicate in cryo of the
// socket to count), both queues together. The iterator is created in the
// socket's own network namespace (SIOCGSKNS; it walks the namespace of the
// thread that creates it, bpf_iter_init_seq_net), on a thread of its own when
// that is not the caller's.
Result<uint32_t> CountUdpDatagrams(int fd);

// The same count whatever CRYO_PRETEND_MISSING says: for the probe of `cryo
// check`, whose results are the kernel's and are cached as such (the pretended
// features are taken as missing on top of them, check::ApplyPretendedMissing).
Result<uint32_t> CountUdpDatagramsOfKernel(int fd);

}  // namespace cryo::bpf
