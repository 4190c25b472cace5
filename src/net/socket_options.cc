#include "net/socket_options.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"

namespace cryo {

namespace {

// Option numbers from the kernel's uapi headers (some newer than libc's).
enum How {
  kCopy,    // set back with the bytes getsockopt returned
  kBuffer,  // SO_RCVBUF/SO_SNDBUF: getsockopt doubles what was set; set half with the *FORCE variant
};

struct Option {
  int level, name;
  const char* label;
  bool inet;  // AF_INET/AF_INET6 only (else every family)
  How how = kCopy;
  bool datagram = false;  // datagram sockets only (an accepted TCP socket has mc_ttl set, which TCP cannot set)
};

constexpr int kSolSocket = SOL_SOCKET, kTcp = IPPROTO_TCP, kIp = IPPROTO_IP, kIpv6 = IPPROTO_IPV6;

// SO_REUSEADDR, SO_REUSEPORT and IPV6_V6ONLY are ListenSocket fields of their
// own (they decide how the address is bound again).
const Option kOptions[] = {
    {kSolSocket, 5, "SO_DONTROUTE", false},
    {kSolSocket, 6, "SO_BROADCAST", false},
    {kSolSocket, 7, "SO_SNDBUF", false, kBuffer},
    {kSolSocket, 8, "SO_RCVBUF", false, kBuffer},
    {kSolSocket, 9, "SO_KEEPALIVE", false},
    {kSolSocket, 10, "SO_OOBINLINE", false},
    {kSolSocket, 12, "SO_PRIORITY", false},
    {kSolSocket, 13, "SO_LINGER", false},
    {kSolSocket, 16, "SO_PASSCRED", false},
    {kSolSocket, 18, "SO_RCVLOWAT", false},
    {kSolSocket, 20, "SO_RCVTIMEO", false},
    {kSolSocket, 21, "SO_SNDTIMEO", false},
    {kSolSocket, 25, "SO_BINDTODEVICE", false},
    {kSolSocket, 29, "SO_TIMESTAMP", false},
    {kSolSocket, 34, "SO_PASSSEC", false},
    {kSolSocket, 35, "SO_TIMESTAMPNS", false},
    {kSolSocket, 36, "SO_MARK", false},
    {kSolSocket, 37, "SO_TIMESTAMPING", false},
    {kSolSocket, 40, "SO_RXQ_OVFL", false},
    {kSolSocket, 41, "SO_WIFI_STATUS", false},
    {kSolSocket, 42, "SO_PEEK_OFF", false},
    {kSolSocket, 43, "SO_NOFCS", false},
    {kSolSocket, 44, "SO_LOCK_FILTER", false},
    {kSolSocket, 45, "SO_SELECT_ERR_QUEUE", false},
    {kSolSocket, 46, "SO_BUSY_POLL", false},
    {kSolSocket, 47, "SO_MAX_PACING_RATE", false},
    {kSolSocket, 49, "SO_INCOMING_CPU", false},
    {kSolSocket, 60, "SO_ZEROCOPY", false},
    {kSolSocket, 61, "SO_TXTIME", false},
    {kSolSocket, 63, "SO_TIMESTAMP_NEW", false},
    {kSolSocket, 64, "SO_TIMESTAMPNS_NEW", false},
    {kSolSocket, 65, "SO_TIMESTAMPING_NEW", false},
    {kSolSocket, 69, "SO_PREFER_BUSY_POLL", false},
    {kSolSocket, 70, "SO_BUSY_POLL_BUDGET", false},
    {kSolSocket, 74, "SO_TXREHASH", false},
    {kSolSocket, 75, "SO_RCVMARK", false},
    {kSolSocket, 76, "SO_PASSPIDFD", false},
    {kTcp, 1, "TCP_NODELAY", true},
    {kTcp, 2, "TCP_MAXSEG", true},
    {kTcp, 3, "TCP_CORK", true},
    {kTcp, 4, "TCP_KEEPIDLE", true},
    {kTcp, 5, "TCP_KEEPINTVL", true},
    {kTcp, 6, "TCP_KEEPCNT", true},
    {kTcp, 7, "TCP_SYNCNT", true},
    {kTcp, 8, "TCP_LINGER2", true},
    {kTcp, 9, "TCP_DEFER_ACCEPT", true},
    {kTcp, 10, "TCP_WINDOW_CLAMP", true},
    {kTcp, 12, "TCP_QUICKACK", true},
    {kTcp, 13, "TCP_CONGESTION", true},
    {kTcp, 16, "TCP_THIN_LINEAR_TIMEOUTS", true},
    {kTcp, 18, "TCP_USER_TIMEOUT", true},
    {kTcp, 23, "TCP_FASTOPEN", true},
    {kTcp, 25, "TCP_NOTSENT_LOWAT", true},
    {kTcp, 27, "TCP_SAVE_SYN", true},
    {kTcp, 34, "TCP_FASTOPEN_NO_COOKIE", true},
    {kTcp, 36, "TCP_INQ", true},
    {kTcp, 37, "TCP_TX_DELAY", true},
    {kIp, 1, "IP_TOS", true},
    {kIp, 2, "IP_TTL", true},
    {kIp, 4, "IP_OPTIONS", true},
    {kIp, 8, "IP_PKTINFO", true},
    {kIp, 10, "IP_MTU_DISCOVER", true},
    {kIp, 11, "IP_RECVERR", true},
    {kIp, 12, "IP_RECVTTL", true},
    {kIp, 13, "IP_RECVTOS", true},
    {kIp, 15, "IP_FREEBIND", true},
    {kIp, 19, "IP_TRANSPARENT", true},
    {kIp, 21, "IP_MINTTL", true},
    {kIp, 22, "IP_NODEFRAG", true},
    {kIp, 24, "IP_BIND_ADDRESS_NO_PORT", true},
    {kIp, 25, "IP_RECVFRAGSIZE", true},
    {kIp, 26, "IP_RECVERR_RFC4884", true},
    {kIp, 51, "IP_LOCAL_PORT_RANGE", true},
    // Datagram sockets (UDP): multicast sending and what recvmsg(2) reports.
    {kIp, 6, "IP_RECVOPTS", true, kCopy, true},
    {kIp, 7, "IP_RETOPTS", true, kCopy, true},
    {kIp, 20, "IP_RECVORIGDSTADDR", true, kCopy, true},
    {kIp, 32, "IP_MULTICAST_IF", true, kCopy, true},
    {kIp, 33, "IP_MULTICAST_TTL", true, kCopy, true},
    {kIp, 34, "IP_MULTICAST_LOOP", true, kCopy, true},
    {kIp, 49, "IP_MULTICAST_ALL", true, kCopy, true},
    {kIp, 50, "IP_UNICAST_IF", true, kCopy, true},
    {kIpv6, 17, "IPV6_MULTICAST_IF", true, kCopy, true},
    {kIpv6, 18, "IPV6_MULTICAST_HOPS", true, kCopy, true},
    {kIpv6, 19, "IPV6_MULTICAST_LOOP", true, kCopy, true},
    {kIpv6, 29, "IPV6_MULTICAST_ALL", true, kCopy, true},
    {kIpv6, 51, "IPV6_RECVHOPLIMIT", true, kCopy, true},
    {kIpv6, 74, "IPV6_RECVORIGDSTADDR", true, kCopy, true},
    {kIpv6, 76, "IPV6_UNICAST_IF", true, kCopy, true},
    {kIpv6, 16, "IPV6_UNICAST_HOPS", true},
    {kIpv6, 23, "IPV6_MTU_DISCOVER", true},
    {kIpv6, 25, "IPV6_RECVERR", true},
    {kIpv6, 31, "IPV6_RECVERR_RFC4884", true},
    {kIpv6, 49, "IPV6_RECVPKTINFO", true},
    {kIpv6, 62, "IPV6_DONTFRAG", true},
    {kIpv6, 66, "IPV6_RECVTCLASS", true},
    {kIpv6, 67, "IPV6_TCLASS", true},
    {kIpv6, 70, "IPV6_AUTOFLOWLABEL", true},
    {kIpv6, 72, "IPV6_ADDR_PREFERENCES", true},
    {kIpv6, 73, "IPV6_MINHOPCOUNT", true},
    {kIpv6, 75, "IPV6_TRANSPARENT", true},
    {kIpv6, 78, "IPV6_FREEBIND", true},
};

constexpr int kSoRcvbufForce = 33, kSoSndbufForce = 32, kSoGetFilter = 26, kTcpUlp = 31;

const Option* Find(int level, int name) {
  for (const Option& o : kOptions)
    if (o.level == level && o.name == name) return &o;
  return nullptr;
}

bool Applies(const Option& o, int family, int type) {
  if (o.datagram && type != SOCK_DGRAM) return false;
  if (!o.inet) return true;
  if (o.level == kIpv6) return family == AF_INET6;
  return family == AF_INET || family == AF_INET6;
}

// getsockopt into `out`; false if the socket has no such option.
bool Get(int fd, const Option& o, std::string* out) {
  char buf[64] = {};
  socklen_t len = sizeof(buf);
  if (::getsockopt(fd, o.level, o.name, buf, &len) != 0) return false;
  out->assign(buf, len);
  return true;
}

int Set(int fd, int level, int name, const std::string& value) {
  const Option* o = Find(level, name);
  if (o && o->how == kBuffer && value.size() == sizeof(int)) {
    int v;
    std::memcpy(&v, value.data(), sizeof(v));
    v /= 2;  // the kernel doubles it again (socket(7)); *FORCE: above rmem_max/wmem_max too
    return ::setsockopt(fd, level, name == 8 ? kSoRcvbufForce : kSoSndbufForce, &v, sizeof(v));
  }
  return ::setsockopt(fd, level, name, value.data(), static_cast<socklen_t>(value.size()));
}

// State that no getsockopt reads back: refused by name.
Status CheckUnreadable(int fd, int family, const std::string& what) {
  socklen_t len = 0;
  if (::getsockopt(fd, SOL_SOCKET, kSoGetFilter, nullptr, &len) != 0 || len != 0)
    return Status::Error(what + " has a socket filter attached (SO_ATTACH_FILTER or SO_ATTACH_BPF), which cryo cannot "
                                "read back");
  if (family == AF_INET || family == AF_INET6) {
    char ulp[32] = {};
    socklen_t ulen = sizeof(ulp);
    if (::getsockopt(fd, IPPROTO_TCP, kTcpUlp, ulp, &ulen) == 0 && ulp[0])
      return Status::Error(what + " has the TCP upper-layer protocol \"" + std::string(ulp) +
                           "\" (TCP_ULP), not supported");
  }
  return Status::Ok();
}

}  // namespace

Status SetSocketOwnerAndFlags(int fd, uint32_t uid, uint32_t gid, uint32_t flags, const std::string& what) {
  if ((uid || gid) && ::fchown(fd, uid, gid) != 0) return Status::FromErrno("fchown of " + what);
  if ((flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return Status::FromErrno("O_NONBLOCK on " + what);
  return Status::Ok();
}

const std::string* KnownOptions::Find(int level, int name) const {
  for (const Value& v : values)
    if (v.level == level && v.name == name) return &v.bytes;
  return nullptr;
}

int IntSocketOption(int fd, int level, int name, const KnownOptions* known) {
  if (const std::string* k = known ? known->Find(level, name) : nullptr; k && k->size() == sizeof(int)) {
    int v;
    std::memcpy(&v, k->data(), sizeof(v));
    return v;
  }
  int v = 0;
  socklen_t len = sizeof(v);
  return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

std::string SocketOptionName(int level, int name) {
  const Option* o = Find(level, name);
  return o ? o->label : "level " + std::to_string(level) + " option " + std::to_string(name);
}

namespace {

constexpr size_t kOptionCount = sizeof(kOptions) / sizeof(kOptions[0]);
std::atomic<uint64_t> sockets_made{0};

// What a new socket of one kind reads for each option (nullopt: it has no
// such option), read once per cryo process and kind: every socket of a dump
// is compared with the same values, and a new socket's defaults do not change
// while cryo runs (they come from the kind and from sysctls a dump does not
// touch). Dumps describe processes on several threads: under the mutex.
using Defaults = std::vector<std::optional<std::string>>;

Result<std::shared_ptr<const Defaults>> DefaultsOf(int family, int type, int protocol, const std::string& what) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int>, std::shared_ptr<const Defaults>> known;
  const auto key = std::make_tuple(family, type, protocol);
  {
    std::lock_guard<std::mutex> l(mu);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  UniqueFd fresh(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!fresh.valid()) return Status::FromErrno("socket to compare the options of " + what);
  sockets_made.fetch_add(1, std::memory_order_relaxed);
  auto d = std::make_shared<Defaults>(kOptionCount);
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (!Applies(kOptions[i], family, type)) continue;
    std::string v;
    if (Get(fresh.get(), kOptions[i], &v)) (*d)[i] = std::move(v);
  }
  std::lock_guard<std::mutex> l(mu);
  return known.emplace(key, std::move(d)).first->second;
}

// Values that were checked to read back as set on a new socket of the kind
// (`true`), or found to be chosen by TCP's autotuning (`false`); once per
// cryo process. Failures are not kept: they refuse the dump.
struct ProbeKey {
  int family, type, protocol;
  size_t option;
  std::string value;
  bool operator<(const ProbeKey& o) const {
    return std::tie(family, type, protocol, option, value) < std::tie(o.family, o.type, o.protocol, o.option, o.value);
  }
};
std::mutex probes_mu;
std::map<ProbeKey, bool> probes;

}  // namespace

uint64_t OptionSocketsMade() { return sockets_made.load(); }

Status DumpSocketOptions(int fd, int family, int type, int protocol, const std::string& what,
                         google::protobuf::RepeatedPtrField<image::SocketOption>* out, bool connected,
                         const KnownOptions* known) {
  CRYO_RETURN_IF_ERROR(CheckUnreadable(fd, family, what));
  CRYO_ASSIGN_OR_RETURN(const std::shared_ptr<const Defaults> defaults, DefaultsOf(family, type, protocol, what));
  for (size_t i = 0; i < kOptionCount; ++i) {
    const Option& o = kOptions[i];
    if (!Applies(o, family, type) || (connected && o.level == kTcp && o.name == 2 /*TCP_MAXSEG*/)) continue;
    std::string mine;
    const std::string* read = known ? known->Find(o.level, o.name) : nullptr;
    if (read) mine = *read;
    const bool has = read || Get(fd, o, &mine);
    if (!has || ((*defaults)[i] && *(*defaults)[i] == mine)) continue;
    const ProbeKey key{family, type, protocol, i, mine};
    bool keep = true;
    bool probed = false;
    {
      std::lock_guard<std::mutex> l(probes_mu);
      if (auto it = probes.find(key); it != probes.end()) {
        probed = true;
        keep = it->second;
      }
    }
    if (!probed) {
      // Set on a new socket, it must read back as it was: else it is not restored.
      UniqueFd probe(::socket(family, type | SOCK_CLOEXEC, protocol));
      if (!probe.valid()) return Status::FromErrno("socket to check option " + std::string(o.label) + " of " + what);
      sockets_made.fetch_add(1, std::memory_order_relaxed);
      if (Set(probe.get(), o.level, o.name, mine) != 0)
        return Status::FromErrno(what + ": option " + o.label + " cannot be set back to what it is");
      std::string back;
      if (!Get(probe.get(), o, &back) || back != mine) {
        // TCP grows (and clamps) the buffers of a connection itself unless the
        // program set them (tcp_rcv_space_adjust, tcp_sndbuf_expand and
        // tcp_clamp_window all skip a socket with SOCK_RCVBUF_LOCK /
        // SOCK_SNDBUF_LOCK). A size the program set reads back as exactly twice
        // what it gave (socket(7)), which the probe reproduces; one it cannot
        // reproduce was chosen by autotuning: the restored socket autotunes again.
        if (!(o.how == kBuffer && type == SOCK_STREAM && (family == AF_INET || family == AF_INET6)))
          return Status::Error(what + ": option " + o.label +
                               " cannot be set back to what it is (it reads back differently)");
        keep = false;
      }
      std::lock_guard<std::mutex> l(probes_mu);
      probes.emplace(key, keep);
    }
    if (!keep) {
      LOG_DEBUG("%s: %s is autotuned by the kernel; the restored connection autotunes it again", what.c_str(), o.label);
      continue;
    }
    image::SocketOption* so = out->Add();
    so->set_level(o.level);
    so->set_name(o.name);
    so->set_value(mine);
  }
  return Status::Ok();
}

Status RestoreSocketOptions(int fd, const google::protobuf::RepeatedPtrField<image::SocketOption>& options,
                            const std::string& what) {
  for (const image::SocketOption& o : options)
    if (!Find(o.level(), o.name()))
      return Status::Error(what + ": option " + SocketOptionName(o.level(), o.name()) + " is none cryo dumps (corrupted image)");
  for (const image::SocketOption& o : options)
    if (Set(fd, o.level(), o.name(), o.value()) != 0)
      return Status::FromErrno("setting " + SocketOptionName(o.level(), o.name()) + " on " + what);
  return Status::Ok();
}

}  // namespace cryo
