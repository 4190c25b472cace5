#include "net/tcp_bulk_options.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace cryo {

namespace {

constexpr uint64_t kDefaultMinSockets = 256;
constexpr uint64_t kMaxRatio = 4;

uint64_t MinSockets() {
  const char* v = ::getenv("CRYO_TCP_BULK_MIN_SOCKETS");
  if (v == nullptr || *v == '\0') return kDefaultMinSockets;
  char* end = nullptr;
  const unsigned long long n = ::strtoull(v, &end, 10);
  return end && *end == '\0' ? n : kDefaultMinSockets;
}

// "inuse N" of the line starting with `prefix` in `path`; 0 if none.
uint64_t InUse(const char* path, std::string_view prefix) {
  Result<std::string> text = ReadFileToString(path);
  if (!text.ok()) return 0;
  for (std::string_view line : SplitLines(*text)) {
    if (!StartsWith(line, prefix)) continue;
    const std::vector<std::string_view> w = SplitWords(line.substr(prefix.size()));
    if (w.size() >= 2 && w[0] == "inuse") return ::strtoull(std::string(w[1]).c_str(), nullptr, 10);
  }
  return 0;
}

}  // namespace

uint64_t NamespaceTcpSockets() {
  return InUse("/proc/self/net/sockstat", "TCP:") + InUse("/proc/self/net/sockstat6", "TCP6:");
}

TcpBulkOptions::TcpBulkOptions() : TcpBulkOptions(MinSockets(), kMaxRatio, NamespaceTcpSockets) {}

bool TcpBulkOptions::PassPays() {
  if (before_ < min_sockets_ || before_ < next_check_) return false;
  if (max_ratio_ == 0 || !namespace_sockets_) return true;
  const uint64_t all = namespace_sockets_();
  const uint64_t described = before_ ? before_ : 1;
  if (all <= max_ratio_ * described) return true;
  next_check_ = described * 2;
  LOG_DEBUG("TCP options: no pass yet: %llu sockets described, %llu TCP sockets in the namespace",
            static_cast<unsigned long long>(before_), static_cast<unsigned long long>(all));
  return false;
}

KnownOptions TcpBulkOptions::For(int fd) {
  KnownOptions out;
  std::lock_guard<std::mutex> l(mu_);
  if (!taken_ && !PassPays()) {
    ++before_;
    return out;
  }
  if (!taken_) {
    taken_ = true;
    // cryo's network namespace: the only one whose connections are dumped
    // (tcp_socket.cc refuses the others before their options are read).
    const double t0 = Now();
    UniqueFd netns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    Result<std::unordered_map<uint64_t, bpf::TcpOptionValues>> all =
        netns.valid() ? bpf::ReadTcpOptions(netns.get()) : Result<std::unordered_map<uint64_t, bpf::TcpOptionValues>>(
                                                                 Status::FromErrno("open /proc/self/ns/net"));
    if (all.ok()) {
      by_cookie_ = std::move(*all);
      LOG_DEBUG("TCP options: %zu sockets read in bulk (%s) in %.1f ms", by_cookie_.size(), bpf::kTcpIterFeature,
                (Now() - t0) * 1e3);
    } else {
      LOG_DEBUG("TCP options read with getsockopt(2) per socket: %s", all.status().ToString().c_str());
    }
  }
  if (by_cookie_.empty()) return out;
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  auto it = ::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 ? by_cookie_.find(cookie) : by_cookie_.end();
  if (it == by_cookie_.end()) {
    ++missed_;
    return out;
  }
  ++found_;
  const std::vector<bpf::BulkOption>& opts = bpf::TcpBulkOptions();
  for (size_t k = 0; k < opts.size(); ++k)
    if (it->second.values[k]) out.values.push_back({opts[k].level, opts[k].name, *it->second.values[k]});
  return out;
}

}  // namespace cryo
