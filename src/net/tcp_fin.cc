#include "net/tcp_fin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"
#include "net/net_lock.h"

namespace cryo {

bool RestorableTcpState(int state) {
  return state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
         state == TCP_LAST_ACK || state == TCP_CLOSING;
}

bool PeerFinReceived(int state) { return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING; }

bool OurFinQueued(int state) {
  return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

Status ExcludeFins(image::TcpSocket* t, int* outq, int* unsent, const std::string& what) {
  const int st = t->state();
  uint32_t our = kNoFin;
  if (st == TCP_FIN_WAIT2) {
    // The FIN acknowledged, and every byte before it.
    if (*outq != 0) return Status::Error(what + " (FIN_WAIT2): " + std::to_string(*outq) + " bytes not acknowledged");
    our = kFinAcked;
  } else if (OurFinQueued(st)) {
    // SIOCOUTQ is write_seq - snd_una and SIOCOUTQNSD write_seq - snd_nxt
    // (tcp_ioctl): both count the FIN while it is not acknowledged, resp. not
    // sent; it is the last thing queued.
    if (*outq < 1) return Status::Error(what + ": its FIN is not in its send queue");
    --*outq;
    our = *unsent > 0 ? kFinUnsent : kFinSent;
    if (*unsent > 0) --*unsent;
  }
  t->set_our_fin(our);
  // SIOCINQ leaves the peer's FIN out already (tcp_inq).
  t->set_peer_fin(PeerFinReceived(st));
  return Status::Ok();
}

void AdjustWindowForPeerFin(const image::TcpSocket& t, uint32_t* rcv_wup, uint32_t* rcv_wnd) {
  if (!t.peer_fin()) return;
  const uint32_t right = *rcv_wup + *rcv_wnd;  // never shrinks: the FIN was inside
  const uint32_t next = t.recv_seq();          // rcv_nxt until the FIN comes again
  if (static_cast<int32_t>(*rcv_wup - next) > 0) *rcv_wup = next;
  *rcv_wnd = right - *rcv_wup;
}

TcpFins FinsOf(const image::TcpSocket& t) {
  TcpFins f;
  f.state = t.state();
  f.our_fin = t.our_fin();
  f.peer_fin = t.peer_fin();
  f.family = t.family();
  f.local = t.local();
  f.peer = t.peer();
  f.peer_fin_seq = t.recv_seq();
  f.ack = t.send_seq() - static_cast<uint32_t>(t.send_queue().size());
  f.window = t.snd_wnd();
  f.send_wscale = t.send_wscale();
  return f;
}

namespace {

uint32_t Sum16(const void* data, size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(p[len - 1] << 8);
  return sum;
}

uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum & 0xffff));
}

// The 20-byte header of a FIN+ACK segment from the peer (no options: a
// segment without timestamps is taken, RFC 7323 section 3.2 leaves it to the
// receiver, and Linux checks PAWS only on segments that carry one).
void BuildFin(const TcpFins& f, uint16_t sport, uint16_t dport, uint8_t* tcp) {
  std::memset(tcp, 0, 20);
  const uint16_t sp = htons(sport), dp = htons(dport);
  const uint32_t seq = htonl(f.peer_fin_seq), ack = htonl(f.ack);
  std::memcpy(tcp, &sp, 2);
  std::memcpy(tcp + 2, &dp, 2);
  std::memcpy(tcp + 4, &seq, 4);
  std::memcpy(tcp + 8, &ack, 4);
  tcp[12] = 5 << 4;     // data offset: 5 words
  tcp[13] = 0x01 | 0x10;  // FIN, ACK
  const uint32_t scaled = f.window >> f.send_wscale;
  const uint16_t win = htons(static_cast<uint16_t>(scaled > 0xffff ? 0xffff : scaled));
  std::memcpy(tcp + 14, &win, 2);
}

// Sends the peer's FIN to the restored socket: a raw IPv4 or IPv6 packet
// from the peer's address to ours (IPPROTO_RAW: the header is cryo's,
// raw(7)), marked to pass the lock.
Status SendPeerFin(const TcpFins& f, const std::string& what) {
  const InetEndpoint me = ParseInetEndpoint(f.local), them = ParseInetEndpoint(f.peer);
  const int family = me.ipv4 ? AF_INET : AF_INET6;
  UniqueFd raw(::socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw.valid()) return Status::FromErrno("raw socket for the peer's FIN of " + what);
  const int mark = static_cast<int>(kNetLockPassMark);
  if (::setsockopt(raw.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0)
    return Status::FromErrno("SO_MARK for the peer's FIN of " + what);
  uint8_t packet[60] = {};
  sockaddr_storage to{};
  socklen_t tolen;
  size_t len;
  uint8_t* tcp;
  uint32_t sum;
  if (me.ipv4) {
    in_addr src{}, dst{};
    if (::inet_pton(AF_INET, them.ip.c_str(), &src) != 1 || ::inet_pton(AF_INET, me.ip.c_str(), &dst) != 1)
      return Status::Error(what + ": addresses for the peer's FIN");
    len = 40;
    packet[0] = 0x45;
    const uint16_t total = htons(static_cast<uint16_t>(len));
    std::memcpy(packet + 2, &total, 2);
    packet[8] = 64;
    packet[9] = IPPROTO_TCP;
    std::memcpy(packet + 12, &src, 4);
    std::memcpy(packet + 16, &dst, 4);
    const uint16_t ipsum = Fold(Sum16(packet, 20));
    std::memcpy(packet + 10, &ipsum, 2);
    tcp = packet + 20;
    sum = Sum16(&src, 4, Sum16(&dst, 4)) + IPPROTO_TCP + 20;
    auto* a = reinterpret_cast<sockaddr_in*>(&to);
    a->sin_family = AF_INET;
    a->sin_addr = dst;
    tolen = sizeof(*a);
  } else {
    in6_addr src{}, dst{};
    if (::inet_pton(AF_INET6, them.ip.c_str(), &src) != 1 || ::inet_pton(AF_INET6, me.ip.c_str(), &dst) != 1)
      return Status::Error(what + ": addresses for the peer's FIN");
    len = 60;
    packet[0] = 0x60;
    packet[5] = 20;  // payload length
    packet[6] = IPPROTO_TCP;
    packet[7] = 64;
    std::memcpy(packet + 8, &src, 16);
    std::memcpy(packet + 24, &dst, 16);
    tcp = packet + 40;
    sum = Sum16(&src, 16, Sum16(&dst, 16)) + IPPROTO_TCP + 20;
    auto* a = reinterpret_cast<sockaddr_in6*>(&to);
    a->sin6_family = AF_INET6;
    a->sin6_addr = dst;
    tolen = sizeof(*a);
  }
  BuildFin(f, them.port, me.port, tcp);
  const uint16_t tcpsum = Fold(Sum16(tcp, 20, sum));
  std::memcpy(tcp + 16, &tcpsum, 2);
  if (::sendto(raw.get(), packet, len, 0, reinterpret_cast<sockaddr*>(&to), tolen) != static_cast<ssize_t>(len))
    return Status::FromErrno("sending the peer's FIN to " + what);
  return Status::Ok();
}

// Our FIN queued as sent (tcp_send_fin; tcp_write_xmit in repair mode with
// the send queue selected marks it sent without transmitting it).
Status ShutdownInRepair(int fd, const std::string& what) {
  for (int q : {TCP_SEND_QUEUE, TCP_NO_QUEUE}) {
    if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) != 0)
      return Status::FromErrno("TCP_REPAIR_QUEUE on " + what);
    if (q == TCP_SEND_QUEUE && ::shutdown(fd, SHUT_WR) != 0)
      return Status::FromErrno("shutdown (our FIN, repair mode) of " + what);
  }
  return Status::Ok();
}

int StateOf(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? ti.tcpi_state : -1;
}

// The peer's FIN sent, and seen taken: the socket shut down for reading
// (tcp_fin). Over loopback it is taken before sendto returns; bounded wait
// all the same, once more with room in the receive buffer (a full buffer
// may drop even a FIN, tcp_data_queue).
Status TakePeerFin(int fd, const TcpFins& f, const std::string& what) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    int before = 0;
    socklen_t len = sizeof(before);
    if (attempt == 1) {
      if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &before, &len) != 0) return Status::FromErrno("SO_RCVBUF of " + what);
      const int more = before + (1 << 20);
      if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &more, sizeof(more)) != 0)
        return Status::FromErrno("SO_RCVBUFFORCE on " + what);
    }
    CRYO_RETURN_IF_ERROR(SendPeerFin(f, what));
    pollfd p = {fd, POLLRDHUP, 0};
    const int n = ::poll(&p, 1, attempt == 0 ? 200 : 1000);
    const int half = before / 2;  // getsockopt reports the doubled value
    if (attempt == 1 && ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &half, sizeof(half)) != 0)
      return Status::FromErrno("setting the receive buffer of " + what + " back");
    if (n == 1 && (p.revents & POLLRDHUP)) return Status::Ok();
  }
  return Status::Error(what + ": the peer's FIN sent by cryo was not taken (state " + std::to_string(StateOf(fd)) +
                       "); is a firewall dropping packets from the peer's address to this one?");
}

}  // namespace

Status RestoreFinsInRepair(int fd, const TcpFins& f, const std::string& what) {
  const bool our_sent = f.our_fin == kFinSent || f.our_fin == kFinAcked;
  // Ours first, then the peer's (CLOSING: FIN_WAIT1 then the peer's FIN);
  // the peer's first in LAST_ACK (CLOSE_WAIT, then the program's close).
  if (our_sent && f.state != TCP_LAST_ACK) CRYO_RETURN_IF_ERROR(ShutdownInRepair(fd, what));
  if (f.peer_fin) CRYO_RETURN_IF_ERROR(TakePeerFin(fd, f, what));
  if (our_sent && f.state == TCP_LAST_ACK) CRYO_RETURN_IF_ERROR(ShutdownInRepair(fd, what));
  return Status::Ok();
}

Status RestoreFinsAfterRepair(int fd, const TcpFins& f, const std::string& what) {
  // Never sent by the original: sent now, after the bytes before it.
  if (f.our_fin == kFinUnsent && ::shutdown(fd, SHUT_WR) != 0) return Status::FromErrno("shutdown (our FIN) of " + what);
  return Status::Ok();
}

}  // namespace cryo
