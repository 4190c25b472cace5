#include "net/udp_queue.h"

#include <arpa/inet.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "bpf/udp_queue_count.h"
#include "net/socket_names.h"
#include "net/socket_options.h"

namespace cryo {

namespace {

constexpr int kSoPeekOff = 42, kSoRcvbufForce = 33;
constexpr size_t kMaxDatagram = 65535;

// Peeks at every datagram from byte offset `from` (the bytes of the
// datagrams already seen) and adds them to `out`, then sets the peek offset
// back.
Status PeekAll(int fd, const std::string& what, int from, UdpQueue* out) {
  static std::mutex mu;  // the peek offset is the socket's own
  std::lock_guard<std::mutex> guard(mu);
  const int saved = IntSocketOption(fd, SOL_SOCKET, kSoPeekOff);
  if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &from, sizeof(from)) != 0)
    return Status::FromErrno("SO_PEEK_OFF on " + what);
  std::vector<char> buf(kMaxDatagram + 1);
  Status st;
  for (;;) {
    sockaddr_storage from{};
    iovec iov = {buf.data(), buf.size()};
    msghdr m{};
    m.msg_name = &from;
    m.msg_namelen = sizeof(from);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    // With a peek offset, each peek moves past the datagram it returned
    // (a zero-length one too: __skb_try_recv_from_queue skips it once peeked).
    const ssize_t n = ::recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      st = Status::FromErrno("peeking at the receive queue of " + what);
      break;
    }
    if (m.msg_flags & MSG_TRUNC) {
      st = Status::Error(what + ": a queued datagram is larger than 64 KiB (a GRO super-packet?), not restored");
      break;
    }
    image::UdpDatagram* d = out->Add();
    d->set_source(std::string(reinterpret_cast<const char*>(&from), m.msg_namelen));
    d->set_data(std::string(buf.data(), static_cast<size_t>(n)));
    if (out->size() > 1000000) {
      st = Status::Error(what + ": more than a million datagrams queued");
      break;
    }
  }
  if (::setsockopt(fd, SOL_SOCKET, kSoPeekOff, &saved, sizeof(saved)) != 0 && st.ok())
    st = Status::FromErrno("setting SO_PEEK_OFF of " + what + " back");
  return st;
}

uint16_t Checksum(const std::string& bytes, uint32_t sum) {
  for (size_t i = 0; i + 1 < bytes.size(); i += 2)
    sum += (static_cast<uint8_t>(bytes[i]) << 8) | static_cast<uint8_t>(bytes[i + 1]);
  if (bytes.size() % 2) sum += static_cast<uint8_t>(bytes.back()) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  const uint16_t c = static_cast<uint16_t>(~sum & 0xffff);
  return c ? c : 0xffff;  // 0 means "no checksum" (RFC 768)
}

void Put16(std::string* s, size_t at, uint16_t v) {
  (*s)[at] = static_cast<char>(v >> 8);
  (*s)[at + 1] = static_cast<char>(v & 0xff);
}

// One end as the family of the packet that carries it: an IPv4 address
// (also a v4-mapped IPv6 one) or an IPv6 address, and its port.
struct End {
  bool v4 = false;
  in_addr a4{};
  in6_addr a6{};
  uint16_t port = 0;  // network order
};

bool ToEnd(const std::string& addr, End* e) {
  if (addr.size() >= sizeof(sockaddr_in) && reinterpret_cast<const sockaddr*>(addr.data())->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, addr.data(), sizeof(in));
    e->v4 = true;
    e->a4 = in.sin_addr;
    e->port = in.sin_port;
    return true;
  }
  if (addr.size() >= sizeof(sockaddr_in6) && reinterpret_cast<const sockaddr*>(addr.data())->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr.data(), sizeof(in6));
    e->port = in6.sin6_port;
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      e->v4 = true;
      std::memcpy(&e->a4, in6.sin6_addr.s6_addr + 12, 4);
    } else {
      e->a6 = in6.sin6_addr;
    }
    return true;
  }
  return false;
}

// The IP packet carrying `data` from `from` to `to` (same family).
std::string Packet(const End& from, const End& to, const std::string& data) {
  std::string udp(8, '\0');
  Put16(&udp, 4, static_cast<uint16_t>(8 + data.size()));
  std::memcpy(udp.data(), &from.port, 2);
  std::memcpy(udp.data() + 2, &to.port, 2);
  udp += data;
  if (from.v4) {
    // UDP over IPv4 may go without a checksum (0), which the receiver accepts.
    std::string ip(20, '\0');
    ip[0] = 0x45;
    Put16(&ip, 2, static_cast<uint16_t>(20 + udp.size()));
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::memcpy(ip.data() + 12, &from.a4, 4);
    std::memcpy(ip.data() + 16, &to.a4, 4);
    return ip + udp;
  }
  // IPv6 requires the checksum over the pseudo-header (RFC 8200 8.1).
  std::string pseudo(reinterpret_cast<const char*>(&from.a6), 16);
  pseudo.append(reinterpret_cast<const char*>(&to.a6), 16);
  uint32_t sum = 0;
  for (size_t i = 0; i < pseudo.size(); i += 2)
    sum += (static_cast<uint8_t>(pseudo[i]) << 8) | static_cast<uint8_t>(pseudo[i + 1]);
  sum += static_cast<uint32_t>(udp.size()) + IPPROTO_UDP;
  Put16(&udp, 6, Checksum(udp, sum));
  std::string ip(40, '\0');
  ip[0] = 0x60;
  Put16(&ip, 4, static_cast<uint16_t>(udp.size()));
  ip[6] = IPPROTO_UDP;
  ip[7] = 64;
  std::memcpy(ip.data() + 8, &from.a6, 16);
  std::memcpy(ip.data() + 24, &to.a6, 16);
  return ip + udp;
}

// Where the looped-back packets go: the socket's address, or loopback for a
// socket bound to the wildcard address, in the family of the source.
Result<End> Destination(const std::string& local, bool v4, const std::string& what) {
  End to;
  if (!ToEnd(local, &to)) return Status::Error(what + ": no local address to send its queue to");
  const bool any4 = to.v4 && to.a4.s_addr == htonl(INADDR_ANY);
  const bool any6 = !to.v4 && IN6_IS_ADDR_UNSPECIFIED(&to.a6);
  if (v4 && any6) {
    to.v4 = true;
    to.a4.s_addr = htonl(INADDR_LOOPBACK);
  } else if (any4) {
    to.a4.s_addr = htonl(INADDR_LOOPBACK);
  } else if (any6) {
    to.a6 = in6addr_loopback;
  }
  if (to.v4 != v4) return Status::Error(what + ": a queued datagram's source is of another family than its address");
  return to;
}

Status MemInfo(int fd, const std::string& what, uint32_t (&mem)[SK_MEMINFO_VARS]) {
  socklen_t len = sizeof(mem);
  if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0) return Status::FromErrno("SO_MEMINFO of " + what);
  return Status::Ok();
}

Status SetRcvbufBack(int fd, int rcvbuf, const std::string& what) {
  const int half = rcvbuf / 2;  // getsockopt shows twice what was set (socket(7))
  if (rcvbuf > 0 && ::setsockopt(fd, SOL_SOCKET, kSoRcvbufForce, &half, sizeof(half)) != 0)
    return Status::FromErrno("setting SO_RCVBUF of " + what + " back");
  return Status::Ok();
}

}  // namespace

namespace {

// Whether a /proc/net/udp table lists a socket (a line after the header).
bool ListsASocket(const std::string& path) {
  Result<std::string> text = ReadFileToString(path);
  if (!text.ok()) return false;
  const size_t header_end = text->find('\n');
  return header_end != std::string::npos && header_end + 1 < text->size();
}

}  // namespace

void PrepareUdpQueueCount(pid_t pid) {
  const std::string net = "/proc/" + std::to_string(pid) + "/net/";
  if (!ListsASocket(net + "udp") && !ListsASocket(net + "udp6")) return;
  const double t0 = Now();
  Status s = bpf::UdpQueueCountAvailable();
  LOG_DEBUG("UDP queue count (BPF iterator) %s in %.1f ms, before the freeze",
            s.ok() ? "loaded" : ("unavailable: " + s.ToString()).c_str(), (Now() - t0) * 1e3);
}

Status PeekUdpQueue(int fd, const std::string& what, bool unverified_ok, UdpQueue* out) {
  out->Clear();
  CRYO_RETURN_IF_ERROR(PeekAll(fd, what, 0, out));
  // Every skb queued is charged to the receive allocation (its truesize,
  // __udp_enqueue_schedule_skb) until it is taken: an empty queue needs no
  // count.
  uint32_t mem[SK_MEMINFO_VARS] = {};
  CRYO_RETURN_IF_ERROR(MemInfo(fd, what, mem));
  if (out->empty() && mem[SK_MEMINFO_RMEM_ALLOC] == 0) return Status::Ok();
  Result<uint32_t> held = bpf::CountUdpDatagrams(fd);
  // A datagram arriving between the peek and the count makes the kernel's
  // count larger: peeked at (from where the first peek stopped: a peek from
  // 0 would now pass over the empty datagrams the first one marked) and
  // counted again. Hidden datagrams stay hidden (the tree is frozen).
  for (int again = 0; held.ok() && *held > static_cast<uint32_t>(out->size()) && again < 2; ++again) {
    size_t seen_bytes = 0;
    for (const image::UdpDatagram& d : *out) seen_bytes += d.data().size();
    const int before = out->size();
    if (seen_bytes > INT32_MAX) break;
    CRYO_RETURN_IF_ERROR(PeekAll(fd, what, static_cast<int>(seen_bytes), out));
    if (out->size() == before) break;  // nothing new: the difference is hidden
    held = bpf::CountUdpDatagrams(fd);
  }
  if (held.ok() && *held == static_cast<uint32_t>(out->size())) return Status::Ok();
  if (held.ok()) {
    if (*held < static_cast<uint32_t>(out->size()))
      return Status::Error(what + ": cryo peeked at " + std::to_string(out->size()) + " queued datagrams but the kernel " +
                           "holds " + std::to_string(*held) + " (a process outside the tree reads the socket?)");
    return Status::Error(what + ": its receive queue holds " + std::to_string(*held - out->size()) +
                         " datagrams the kernel hides from peeking: empty datagrams already peeked at (by the program, "
                         "or by an earlier --leave-running dump), which cryo does not restore; let the program read "
                         "them, then dump again");
  }
  // No exact count. Nothing seen while the queue still holds memory: hidden
  // datagrams are all it holds.
  if (out->empty())
    return Status::Error(what + ": its receive queue holds datagrams that can only be read by taking them (empty "
                                "datagrams already peeked at, by the program or by an earlier --leave-running dump), "
                                "which cryo does not restore; let the program read them, then dump again");
  if (unverified_ok) return Status::Ok();
  return Status::Error(what + ": cannot count the datagrams of its receive queue exactly: BPF iterator unavailable (" +
                       held.status().ToString() + "); cryo peeked at " + std::to_string(out->size()) +
                       " but an empty datagram the program already peeked at would be missed. --udp-queue-unverified "
                       "dumps the datagrams seen anyway");
}

Status RefillUdpQueue(int fd, const std::string& local, const UdpQueue& queue, const std::string& what) {
  if (queue.empty()) return Status::Ok();
  // Room for the whole queue for the time of the refill (a full queue takes
  // about what it took before), then the socket's own size again.
  const int rcvbuf = IntSocketOption(fd, SOL_SOCKET, SO_RCVBUF);
  size_t total = 0;
  for (const image::UdpDatagram& d : queue) total += d.data().size() + 1024;
  const int big = static_cast<int>(std::min<size_t>(total * 4 + (1 << 20), 1u << 30));
  if (::setsockopt(fd, SOL_SOCKET, kSoRcvbufForce, &big, sizeof(big)) != 0)
    return Status::FromErrno("SO_RCVBUFFORCE for the queue of " + what);
  // Peeking at an empty datagram marks it peeked, and every later peek from
  // a peek offset passes over it (net/core/datagram.c,
  // __skb_try_recv_from_queue): checked by peeking, an empty datagram would
  // be invisible to the next dump of the restored program. So a queue that
  // holds one is checked by its memory instead: each datagram arrived if the
  // queue's memory grew (loopback delivers before sendto returns; the
  // enqueue charges the skb's truesize, __udp_enqueue_schedule_skb) and the
  // socket dropped nothing.
  bool has_empty = false;
  for (const image::UdpDatagram& d : queue) has_empty |= d.data().empty();
  uint32_t mem[SK_MEMINFO_VARS] = {};
  if (has_empty) CRYO_RETURN_IF_ERROR(MemInfo(fd, what, mem));
  UniqueFd raw4, raw6;
  for (int i = 0; i < queue.size(); ++i) {
    const image::UdpDatagram& d = queue[i];
    const std::string which = what + ", queued datagram " + std::to_string(i) + " from " + InetAddressName(d.source());
    End from;
    if (!ToEnd(d.source(), &from)) return Status::Error(which + ": no source address");
    CRYO_ASSIGN_OR_RETURN(End to, Destination(local, from.v4, which));
    UniqueFd& raw = from.v4 ? raw4 : raw6;
    if (!raw.valid()) {
      // IPPROTO_RAW: the packet carries its own IP header (raw(7), raw6: IPV6_HDRINCL implied).
      raw = UniqueFd(::socket(from.v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
      if (!raw.valid()) return Status::FromErrno("raw socket to refill the queue of " + what);
    }
    const std::string packet = Packet(from, to, d.data());
    sockaddr_storage dst{};
    socklen_t dlen;
    if (to.v4) {
      auto* in = reinterpret_cast<sockaddr_in*>(&dst);
      in->sin_family = AF_INET;
      in->sin_addr = to.a4;
      dlen = sizeof(*in);
    } else {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&dst);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = to.a6;
      dlen = sizeof(*in6);
    }
    if (::sendto(raw.get(), packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&dst), dlen) !=
        static_cast<ssize_t>(packet.size()))
      return Status::FromErrno("sending " + which + " again");
    if (has_empty) {
      uint32_t now[SK_MEMINFO_VARS] = {};
      CRYO_RETURN_IF_ERROR(MemInfo(fd, what, now));
      if (now[SK_MEMINFO_RMEM_ALLOC] <= mem[SK_MEMINFO_RMEM_ALLOC] || now[SK_MEMINFO_DROPS] != mem[SK_MEMINFO_DROPS])
        return Status::Error(which + " did not arrive when refilling its queue");
      std::memcpy(mem, now, sizeof(mem));
    }
  }
  if (has_empty) return SetRcvbufBack(fd, rcvbuf, what);
  // Loopback delivers in the sender's softirq, before sendto returns; check
  // that every datagram arrived, in order, from its source.
  UdpQueue back;
  CRYO_RETURN_IF_ERROR(PeekAll(fd, what, 0, &back));
  if (back.size() != queue.size())
    return Status::Error(what + ": " + std::to_string(back.size()) + " of " + std::to_string(queue.size()) +
                         " queued datagrams arrived when refilling its queue");
  for (int i = 0; i < queue.size(); ++i) {
    End a, b;
    ToEnd(queue[i].source(), &a);
    ToEnd(back[i].source(), &b);
    const bool same = a.v4 == b.v4 && a.port == b.port &&
                      (a.v4 ? a.a4.s_addr == b.a4.s_addr : std::memcmp(&a.a6, &b.a6, sizeof(a.a6)) == 0);
    if (!same || back[i].data() != queue[i].data())
      return Status::Error(what + ": queued datagram " + std::to_string(i) + " came back as another when refilling its queue");
  }
  return SetRcvbufBack(fd, rcvbuf, what);
}

}  // namespace cryo
