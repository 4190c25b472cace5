// The options of a dump's TCP connections read in bulk: one pass of the TCP
// iterator (bpf/tcp_options.h) over cryo's network namespace, the first
// time a connection is described, instead of a getsockopt(2) per option and
// socket. Whatever the iterator did not read (it is missing: no BTF, no
// CAP_BPF, CRYO_PRETEND_MISSING=bpf-iter-tcp; a socket made since the pass;
// an option its helper refuses) is read with getsockopt(2) as before, so
// the record is the same either way.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "bpf/tcp_options.h"
#include "net/socket_options.h"

namespace cryo {

// The pass has a fixed cost (loading the program: ~1 ms with the BTF
// values cached, bpf/btf_cache.h, ~18 ms on the first pass of a boot that
// parses the BTF; measured on the 2-core test machine) and walks every full
// TCP socket of the namespace (~10 us each: 23 bpf_getsockopt and a
// record), the dump's or not, to save ~24 getsockopt(2) for each socket of
// the dump. It runs once a dump has described `min_sockets` connections'
// sockets the usual way (default 256, or CRYO_TCP_BULK_MIN_SOCKETS, which
// the tests set to 0) and, with `max_ratio` not 0, the namespace has at most
// `max_ratio` times as many TCP sockets in use as the dump has described so
// far (/proc/net/sockstat and sockstat6; else checked again each time that
// count doubles): a small dump on a machine of many connections would pay
// for walking all of them.
class TcpBulkOptions {
 public:
  TcpBulkOptions();
  explicit TcpBulkOptions(uint64_t min_sockets, uint64_t max_ratio = 0,
                          std::function<uint64_t()> namespace_sockets = nullptr)
      : min_sockets_(min_sockets), max_ratio_(max_ratio), namespace_sockets_(std::move(namespace_sockets)) {}
  // What the pass read of socket `fd` (a socket of cryo's network
  // namespace); empty when it read nothing of it.
  KnownOptions For(int fd);
  // Sockets found in the pass, and not (for the tests and the debug log).
  uint64_t found() const { return found_; }
  uint64_t missed() const { return missed_; }

 private:
  bool PassPays();

  std::mutex mu_;
  uint64_t min_sockets_;
  uint64_t max_ratio_;
  std::function<uint64_t()> namespace_sockets_;
  uint64_t before_ = 0;      // sockets described before the pass
  uint64_t next_check_ = 0;  // the ratio is checked again at this count
  bool taken_ = false;
  std::unordered_map<uint64_t, bpf::TcpOptionValues> by_cookie_;
  uint64_t found_ = 0, missed_ = 0;
};

// TCP sockets in use in cryo's network namespace (IPv4 and IPv6; 0 if
// unknown).
uint64_t NamespaceTcpSockets();

}  // namespace cryo
