// Offsets and ids of the kernel's BTF (bpf_util.h), kept from one cryo to the
// next under /run/cryo: libbpf parsing /sys/kernel/btf/vmlinux costs ~20 ms
// (measured on the 2-core test machine), most of the fixed cost of the TCP
// options pass (tcp_options.h, issue 14), for a handful of numbers that do
// not change while the machine runs. Keyed by the boot id, the kernel's
// release and build (uname) and the BTF's size: another boot or kernel never
// reads them. A cache that is not a regular file owned by us and writable by
// us alone, or fails its checksum, or has another key, is ignored and
// rewritten. The values are still not trusted blindly: a caller uses cached
// ones only where a wrong one is refused by the kernel (the verifier checks
// every access of the context and of BTF-typed pointers; the link's info
// names the iterator it is attached to), and on any refusal looks them all up
// in the BTF again (BtfLookups::Distrust).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "bpf/bpf_util.h"

namespace cryo::bpf {

// The running kernel as the cache names it: boot id, uname release and
// version, size of /sys/kernel/btf/vmlinux.
Result<std::string> KernelCacheKey();

// /run/cryo/btf.cache, or "" (no cache) when /run/cryo cannot be made or is
// not ours.
std::string DefaultBtfCachePath();

// The cache file for `key` and `values`, and its parser: an error for any
// other key, a bad checksum, or anything malformed.
using BtfValues = std::map<std::string, int64_t>;
std::string SerializeBtfCache(const std::string& key, const BtfValues& values);
Result<BtfValues> ParseBtfCache(std::string_view text, const std::string& key);

// Reads `path` (checked: regular, ours, mode without group/other write, at
// most 64 KiB) and parses it for `key`.
Result<BtfValues> ReadBtfCache(const std::string& path, const std::string& key);
// Writes it atomically (a temporary file renamed over it), mode 0600.
Status WriteBtfCache(const std::string& path, const std::string& key, const BtfValues& values);

// Kernel BTF parses by this process (LoadKernelBtf through BtfLookups), for
// the tests and the debug log.
uint64_t KernelBtfParses();

// Looks values up in the cache first, in the kernel's BTF (parsed on the
// first miss) else. Not thread-safe.
class BtfLookups {
 public:
  // `cache_path` or `key` empty: no cache (every value from the BTF).
  BtfLookups(std::string cache_path, std::string key);

  // As PathOffset and FunctionId (bpf_util.h).
  Result<int16_t> Offset(const char* type, std::initializer_list<std::string_view> path, size_t size);
  Result<uint32_t> Function(const char* name, const std::string& missing);

  // Whether a value came from the cache; whether the BTF was parsed.
  bool used_cache() const { return used_cache_; }
  bool parsed() const { return btf_ != nullptr; }
  // Why the cache was not used ("" when it was, or there is none).
  const std::string& cache_miss() const { return miss_; }

  // Forget the cache: later lookups go to the BTF, and Save() replaces it.
  void Distrust();
  // Writes what was looked up in the BTF (with the cached values still
  // trusted) when anything was; a no-op otherwise.
  Status Save();

 private:
  Result<const btf*> Btf();
  Result<int64_t> Cached(const std::string& name);

  std::string path_, key_;
  bool read_ = false, used_cache_ = false, dirty_ = false;
  std::string miss_;
  BtfValues cached_, values_;
  KernelBtf btf_;
};

}  // namespace cryo::bpf
