// The options of a dump's TCP connections read in bulk: one pass of the TCP
// iterator (bpf/tcp_options.h) over cryo's network namespace, the first
// time a connection is described, instead of a getsockopt(2) per option and
// socket. Whatever the iterator did not read (it is missing: no BTF, no
// CAP_BPF, CRYO_PRETEND_MISSING=bpf-iter-tcp; a socket made since the pass;
// an option its helper refuses) is read with getsockopt(2) as before, so
// the record is the same either way.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "bpf/tcp_options.h"
#include "net/socket_options.h"

namespace cryo {

// The pass has a fixed cost (parsing the kernel's BTF, ~20 ms, and loading
// the program, ~10 ms, measured on the 2-core test machine) and saves ~24
// getsockopt(2) per socket (~7 us): it runs only once a dump has described
// `min_sockets` connections' sockets the usual way (default 4096, or
// CRYO_TCP_BULK_MIN_SOCKETS, which the tests set to 0).
class TcpBulkOptions {
 public:
  TcpBulkOptions();
  explicit TcpBulkOptions(uint64_t min_sockets) : min_sockets_(min_sockets) {}
  // What the pass read of socket `fd` (a socket of cryo's network
  // namespace); empty when it read nothing of it.
  KnownOptions For(int fd);
  // Sockets found in the pass, and not (for the tests and the debug log).
  uint64_t found() const { return found_; }
  uint64_t missed() const { return missed_; }

 private:
  std::mutex mu_;
  uint64_t min_sockets_;
  uint64_t before_ = 0;  // sockets described before the pass
  bool taken_ = false;
  std::unordered_map<uint64_t, bpf::TcpOptionValues> by_cookie_;
  uint64_t found_ = 0, missed_ = 0;
};

}  // namespace cryo
