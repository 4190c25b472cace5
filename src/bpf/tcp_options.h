// The options of every TCP socket of a network namespace, read in one pass
// by a BPF iterator over its TCP sockets (iter/tcp, BPF_TRACE_ITER, Linux
// 5.9; bpf_getsockopt from it since 5.15; needs the kernel's BTF and CAP_BPF
// + CAP_PERFMON) instead of a getsockopt(2) per option and socket: a dump of
// thousands of connections spent most of its time describing sockets in
// those calls (issue 14).
//
// For each socket the program writes one record: the socket's cookie
// (bpf_get_socket_cookie, the value SO_COOKIE reads) and, for each option of
// TcpBulkOptions(), what bpf_getsockopt returned and the value. bpf_getsockopt
// calls the kernel's own getsockopt code for these options (sk_getsockopt,
// do_tcp_getsockopt, do_ip_getsockopt, do_ipv6_getsockopt; net/core/filter.c)
// with the socket locked, as getsockopt(2) does, so a value it reads is the
// one getsockopt(2) reads. An option the helper refuses (another kernel's
// list, an IPv6 option of an IPv4 socket) is left to getsockopt(2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "bpf/bpf_util.h"

namespace cryo::bpf {

// CRYO_PRETEND_MISSING and `cryo check` name the feature so.
inline constexpr char kTcpIterFeature[] = "bpf-iter-tcp";

struct BulkOption {
  int level;
  int name;
  uint32_t size;  // bytes getsockopt(2) returns for it (4, or 16 for TCP_CONGESTION)
};

// The options the iterator reads, in the order of a record.
const std::vector<BulkOption>& TcpBulkOptions();

// What the iterator read of one socket.
struct TcpOptionValues {
  uint64_t cookie = 0;
  // By TcpBulkOptions() index: the bytes getsockopt(2) returns; nullopt
  // where bpf_getsockopt failed (read it with getsockopt(2)).
  std::vector<std::optional<std::string>> values;
};

// The records of the iterator's output `bytes` (a whole number of them).
Result<std::vector<TcpOptionValues>> ParseTcpOptionRecords(std::string_view bytes);

// Ok when the iterator can be used here; else why not. Loads the program on
// the first call and keeps it for the process.
Status TcpOptionsIterAvailable();

// Every TCP socket of the network namespace `netns` (an fd of it), by
// cookie. Sockets made later are not in it.
Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptions(int netns);

// The same whatever CRYO_PRETEND_MISSING says: for `cryo check`'s probe,
// whose result is cached for every later cryo (the pretence is applied on
// top of the cached results).
Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptionsOfKernel(int netns);

// Loads the program (what the first TcpOptionsIterAvailable does, with
// DefaultBtfCachePath()), its offsets from the BTF cache at `cache_path`
// ("": none, btf_cache.h) or the kernel's BTF. Cached values the kernel
// refuses are looked up again and the cache rewritten.
struct TcpIterLoad {
  LoadedIterator iterator;
  bool from_cache = false;    // loaded without parsing the kernel's BTF
  std::string cache_refused;  // why the cached values were refused ("" if they were not)
};
TcpIterLoad LoadTcpOptionsIterator(const std::string& cache_path);

// ReadTcpOptionsOfKernel with the iterator `link`.
Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptionsWith(int link, int netns);

}  // namespace cryo::bpf
