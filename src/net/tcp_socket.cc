// Established TCP connections (IPv4, IPv6, v4-mapped), with TCP_REPAIR
// (Documentation/networking/ and net/ipv4/tcp.c): the dump locks the
// connection (net_lock.h), puts the socket in repair mode and reads its
// sequence numbers, both queues (MSG_PEEK on the queue TCP_REPAIR_QUEUE
// selects), the options the handshake negotiated (TCP_INFO), the window
// (TCP_REPAIR_WINDOW) and the timestamp clock; the restore makes a socket in
// repair mode, sets the sequence numbers, binds and connects it (no packet
// is sent in repair mode: the socket is just ESTABLISHED), refills both
// queues and sets the options and window back. Repair mode ends once the
// whole tree is rebuilt (tcp_session.h). Half-closed and closing states get
// their FINs back (tcp_fin.h). Every other state, and a connection shut down
// for reading, is refused by name.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "proc/proc.h"
#include "net/net_lock.h"
#include "net/socket_options.h"
#include "net/tcp_diag.h"
#include "net/tcp_fin.h"
#include "net/tcp_migrate.h"
#include "net/tcp_session.h"

namespace cryo {

std::string TcpStateName(int state);
std::string TcpEndpointName(const std::string& addr);
std::string TcpConnectionName(const image::TcpSocket& t);

namespace {

constexpr int kTcpOptMss = 2, kTcpOptWindow = 3, kTcpOptSackPerm = 4, kTcpOptTimestamp = 8;  // TCPOPT_* (net/tcp.h)

// The target's TCP socket in cryo (FdSource::Dup, borrowed) if it does not
// listen; -1 otherwise.
int GrabTcp(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return -1;
  const FdSource::SocketKind& k = s.Socket();
  if ((k.family != AF_INET && k.family != AF_INET6) || k.type != SOCK_STREAM || k.protocol != IPPROTO_TCP ||
      k.accepting == 1)
    return -1;
  return s.Dup();
}

std::string Describe(const image::TcpSocket& t) { return TcpConnectionName(t); }

Status SetInt(int fd, int level, int name, int value, const std::string& what, const char* label) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return Status::FromErrno(std::string(label) + " on " + what);
  return Status::Ok();
}

// The queue TCP_REPAIR_QUEUE selects: its sequence number and `len` bytes
// read without consuming them.
Status PeekQueue(int fd, int queue, size_t len, uint32_t* seq, std::string* data, const std::string& what) {
  const char* name = queue == TCP_SEND_QUEUE ? "send queue" : "receive queue";
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, what, "TCP_REPAIR_QUEUE"));
  socklen_t sl = sizeof(*seq);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &sl) != 0)
    return Status::FromErrno("TCP_QUEUE_SEQ of the " + std::string(name) + " of " + what);
  data->assign(len, '\0');
  if (len == 0) return Status::Ok();
  const ssize_t n = ::recv(fd, data->data(), len, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return Status::FromErrno("reading the " + std::string(name) + " of " + what);
  if (static_cast<size_t>(n) != len)
    return Status::Error(what + ": its " + name + " holds " + std::to_string(len) + " bytes but " + std::to_string(n) +
                         " could be read");
  return Status::Ok();
}

// Whether the socket lives in cryo's network namespace (the lock and the
// restore act there). The socket's namespace was read by the netns check
// before the handler (FdSource::SocketNetns); cryo's is read once.
bool InOurNetns(const FdSource& s) {
  static const uint64_t ours = [] {
    struct stat b{};
    return ::stat("/proc/self/ns/net", &b) == 0 ? static_cast<uint64_t>(b.st_ino) : 0;
  }();
  const uint64_t theirs = s.SocketNetns();
  return theirs && theirs == ours;
}

// The remote address of TCP socket `ino` from /proc/net/tcp or tcp6 (cryo's
// network namespace), as a struct sockaddr_in or sockaddr_in6: for a socket
// that getpeername(2) tells nothing about (SYN_SENT: ENOTCONN, inet_getname).
// "" if not found.
std::string PeerFromProcNet(uint64_t ino, int family) {
  std::ifstream in(family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6");
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
    if (!(f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode)) continue;
    if (inode != std::to_string(ino)) continue;
    const size_t colon = remote.find(':');
    if (colon == std::string::npos) return "";
    const uint16_t port = htons(static_cast<uint16_t>(std::stoul(remote.substr(colon + 1), nullptr, 16)));
    // The address as the kernel's 32-bit words, each printed in host order.
    uint32_t words[4] = {};
    const size_t nwords = colon / 8;
    for (size_t i = 0; i < nwords && i < 4; ++i) words[i] = static_cast<uint32_t>(std::stoul(remote.substr(i * 8, 8), nullptr, 16));
    if (family == AF_INET) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = port;
      std::memcpy(&a.sin_addr, words, 4);
      return std::string(reinterpret_cast<const char*>(&a), sizeof(a));
    }
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = port;
    std::memcpy(&a.sin6_addr, words, 16);
    return std::string(reinterpret_cast<const char*>(&a), sizeof(a));
  }
  return "";
}

// ", peer outside the tree: pid 99 (nc)" when the other end of the
// connection is a socket of this network namespace that some process holds
// (a refusal names it); "" when it is not known.
std::string PeerHolder(const FdSource& s, const image::TcpSocket& t) {
  Result<TcpDiag> peer = QueryTcpConnection(t.family(), t.peer(), t.local(), -1);
  if (!peer.ok() || peer->ino == 0) return "";
  const std::string link = "socket:[" + std::to_string(peer->ino) + "]";
  std::string inside, outside;
  (void)proc::ForEachFdOutside({}, [&](const proc::OutsideFd& o) {
    if (o.link != link) return Status::Ok();
    const bool in_tree = s.scope && s.scope->pids.count(o.pid);
    std::string& who = in_tree ? inside : outside;
    if (who.size() < 200) who += (who.empty() ? "" : ", ") + NamePid(o.pid) + " fd " + o.fd;
    return Status::Ok();
  });
  if (!outside.empty()) return ", peer outside the tree: " + outside;
  if (!inside.empty()) return ", peer in the tree: " + inside;
  return "";
}

// The socket as a refusal names it: "pid 12 fd 4: TCP 127.0.0.1:8002 <->
// 127.0.0.1:35550 (ESTABLISHED), peer outside the tree: pid 99 (nc) fd 5".
std::string RefusalName(const FdSource& s, const image::TcpSocket& t, const std::string& what) {
  return what + " (" + TcpStateName(t.state()) + ")" + PeerHolder(s, t);
}

// A connection in a state cryo does not restore, by name (established,
// half-closed and closing states are restored, tcp_fin.h). TIME_WAIT is
// never an fd's: once the FIN of both ends is through, the socket an fd holds
// is CLOSE.
Status StateRefusal(const std::string& named, int state) {
  std::string why;
  switch (state) {
    case TCP_SYN_SENT:
    case TCP_SYN_RECV:
      why = "the connection is being opened (connect(2) in progress)";
      break;
    case TCP_CLOSE:
      why = "a TCP socket neither connected nor listening (never connected, or closed by a reset)";
      break;
    default:
      why = "a state cryo does not know";
  }
  return Status::Error(named + ": " + why +
                       "; cryo restores established, half-closed and closing connections and listeners (wait until the "
                       "connection is established or closed before the checkpoint)");
}

// TCP_MD5SIG (RFC 2385) and TCP-AO (RFC 5925) keys: no getsockopt(2) reads
// the MD5 keys back (inet_diag reports whether there are any) nor TCP-AO's
// secrets, so a connection signed with either is refused by name.
// `named`: the socket as a refusal names it (looked up only for one).
Status CheckNoSignatures(int fd, const image::TcpSocket& t, const std::function<std::string()>& named) {
  // One inet_diag dump for all the connections of a dump (TcpDiagSnapshot).
  TcpDumpSession* session = CurrentTcpDump();
  CRYO_ASSIGN_OR_RETURN(const TcpDiag diag,
                        session ? session->diag().Find(t.family(), t.ino(), t.local(), t.peer(), t.state())
                                : QueryTcpConnection(t.family(), t.local(), t.peer(), t.state()));
  if (diag.md5sig)
    return Status::Error(named() + ": signed with TCP_MD5SIG keys (RFC 2385), which cryo cannot read "
                         "back and does not restore");
  // TCP_AO_INFO (linux/tcp.h, Linux 6.7): ENOENT when no TCP-AO key is set.
  constexpr int kTcpAoInfo = 40;
  char info[64] = {};
  socklen_t len = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, kTcpAoInfo, info, &len) == 0)
    return Status::Error(named() + ": signed with TCP-AO keys (RFC 5925), which cryo does not restore");
  return Status::Ok();
}

Status DumpTcp(const FdSource& s, int fd, image::TcpSocket* t) {
  t->set_family(s.Socket().family);
  t->set_ino(s.st.st_ino);
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return Status::FromErrno("getsockname of " + s.what());
  t->set_local(std::string(reinterpret_cast<const char*>(&a), len));
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) return Status::FromErrno("TCP_INFO of " + s.what());
  len = sizeof(a);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) t->set_peer(std::string(reinterpret_cast<const char*>(&a), len));
  t->set_state(ti.tcpi_state);
  // Only for the refusal's message: such a socket is not restored.
  if (t->peer().empty() && ti.tcpi_state == TCP_SYN_SENT) t->set_peer(PeerFromProcNet(t->ino(), t->family()));
  std::string what = s.what() + ": " + Describe(*t);
  if (!RestorableTcpState(ti.tcpi_state)) return StateRefusal(RefusalName(s, *t, what), ti.tcpi_state);
  // Shut down for reading (shutdown(SHUT_RD)) keeps the state; poll shows it
  // (as it does once the peer's FIN came).
  pollfd p = {fd, POLLRDHUP, 0};
  if (!PeerFinReceived(ti.tcpi_state) && ::poll(&p, 1, 0) > 0 && (p.revents & POLLRDHUP))
    return Status::Error(RefusalName(s, *t, what) + ": shut down for reading, which cryo does not restore");
  if (!InOurNetns(s))
    return Status::Error(RefusalName(s, *t, what) + ": in another network namespace than cryo's, which cryo does not "
                         "restore yet");
  CRYO_RETURN_IF_ERROR(CheckNoSignatures(fd, *t, [&] { return RefusalName(s, *t, what); }));
  TcpDumpSession* session = CurrentTcpDump();
  if (!session) return Status::Error("internal: " + what + " met outside a dump");
  // Most options of every connection, read in one pass (tcp_bulk_options.h).
  const KnownOptions known = session->bulk_options().For(fd);
  t->set_reuseport(IntSocketOption(fd, SOL_SOCKET, SO_REUSEPORT, &known) == 1);
  if (t->family() == AF_INET6) t->set_v6only(IntSocketOption(fd, IPPROTO_IPV6, IPV6_V6ONLY) == 1);
  t->set_owner_uid(s.st.st_uid);
  t->set_owner_gid(s.st.st_gid);
  CRYO_RETURN_IF_ERROR(DumpSocketOptions(fd, t->family(), SOCK_STREAM, IPPROTO_TCP, what, t->mutable_options(),
                                         /*connected=*/true, &known));

  // The rest is read in repair mode, later, with the whole tree held at
  // cryo's gate (TcpDumpSession::ReadDeferred, dump/tcp_hold.h).
  return session->Defer(*t, s.pid, s.fd, what);
}

}  // namespace

// In repair mode (tcp_session.h): sequence numbers, queues, options, window.
Status ReadTcpRepairState(int fd, image::TcpSocket* t, const std::string& what) {
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) return Status::FromErrno("TCP_INFO of " + what);
  // Locked from here on: the state read now is the one restored.
  t->set_state(ti.tcpi_state);
  if (!RestorableTcpState(ti.tcpi_state))
    return StateRefusal(what + " (" + TcpStateName(ti.tcpi_state) + ", so since the dump began)", ti.tcpi_state);
  int outq = 0, unsent = 0, inq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0 || ::ioctl(fd, SIOCOUTQNSD, &unsent) != 0 || ::ioctl(fd, SIOCINQ, &inq) != 0)
    return Status::FromErrno("queue sizes of " + what);
  if (outq < 0 || unsent < 0 || unsent > outq || inq < 0) return Status::Error(what + ": queue sizes make no sense");
  CRYO_RETURN_IF_ERROR(ExcludeFins(t, &outq, &unsent, what));
  uint32_t seq = 0;
  CRYO_RETURN_IF_ERROR(PeekQueue(fd, TCP_SEND_QUEUE, static_cast<size_t>(outq), &seq, t->mutable_send_queue(), what));
  t->set_send_seq(seq - (t->our_fin() != kNoFin ? 1 : 0));  // write_seq counts our FIN
  t->set_unsent(static_cast<uint32_t>(unsent));
  CRYO_RETURN_IF_ERROR(PeekQueue(fd, TCP_RECV_QUEUE, static_cast<size_t>(inq), &seq, t->mutable_recv_queue(), what));
  t->set_recv_seq(seq - (t->peer_fin() ? 1 : 0));  // rcv_nxt counts the peer's FIN
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, what, "TCP_REPAIR_QUEUE"));
  t->set_mss(static_cast<uint32_t>(IntSocketOption(fd, IPPROTO_TCP, TCP_MAXSEG)));
  t->set_timestamps(ti.tcpi_options & TCPI_OPT_TIMESTAMPS);
  t->set_sack(ti.tcpi_options & TCPI_OPT_SACK);
  t->set_window_scaling(ti.tcpi_options & TCPI_OPT_WSCALE);
  t->set_send_wscale(ti.tcpi_snd_wscale);
  t->set_recv_wscale(ti.tcpi_rcv_wscale);
  uint32_t ts = 0;
  socklen_t tsl = sizeof(ts);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, &tsl) != 0) return Status::FromErrno("TCP_TIMESTAMP of " + what);
  t->set_timestamp(ts);
  tcp_repair_window w{};
  socklen_t wl = sizeof(w);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &wl) != 0) return Status::FromErrno("TCP_REPAIR_WINDOW of " + what);
  t->set_snd_wl1(w.snd_wl1);
  t->set_snd_wnd(w.snd_wnd);
  t->set_max_window(w.max_window);
  t->set_rcv_wnd(w.rcv_wnd);
  t->set_rcv_wup(w.rcv_wup);
  return Status::Ok();
}

namespace {

// Writes `data` into the queue TCP_REPAIR_QUEUE selected: in repair mode
// send(2) queues it as sent (send queue) or as received (receive queue,
// tcp_send_rcvq), advancing the sequence numbers set before connect.
// `*selected`: the queue selected now, updated.
Status FillQueue(int fd, int queue, const std::string& data, const std::string& what, int* selected) {
  if (data.empty()) return Status::Ok();  // nothing to queue: no need to select the queue
  if (*selected != queue) CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, what, "TCP_REPAIR_QUEUE"));
  *selected = queue;
  return SendAll(fd, data, queue == TCP_RECV_QUEUE, what);
}

Status RestoreTcp(int fd, const image::Fd& f, const std::string& what, std::string* unsent, bool* nonlocal) {
  const image::TcpSocket& t = f.tcp_socket();
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, what, "TCP_REPAIR"));
  CRYO_RETURN_IF_ERROR(RestoreSocketOptions(fd, t.options(), what));
  if (t.reuseport()) CRYO_RETURN_IF_ERROR(SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, what, "SO_REUSEPORT"));
  if (t.family() == AF_INET6) CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, t.v6only(), what, "IPV6_V6ONLY"));
  const uint32_t sent = static_cast<uint32_t>(t.send_queue().size()) - t.unsent();
  // Sequence numbers of the first queued byte of each queue: refilling the
  // queues below brings them to where they were.
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, what, "TCP_REPAIR_QUEUE"));
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ,
                              static_cast<int>(t.send_seq() - static_cast<uint32_t>(t.send_queue().size())), what,
                              "TCP_QUEUE_SEQ (send)"));
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, what, "TCP_REPAIR_QUEUE"));
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ,
                              static_cast<int>(t.recv_seq() - static_cast<uint32_t>(t.recv_queue().size())), what,
                              "TCP_QUEUE_SEQ (receive)"));
  // Repair mode forces address reuse (SK_FORCE_REUSE): the bind succeeds next
  // to the listener the connection was accepted from.
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(t.local().data()),
                            static_cast<socklen_t>(t.local().size())) == 0;
  // A migrated connection whose address follows the tree later (tcp_migrate.h).
  int transparent = -1;
  if (!bound && errno == EADDRNOTAVAIL && TcpNonlocalBindOnRestore()) {
    CRYO_ASSIGN_OR_RETURN(transparent, BindNonlocal(fd, t.family(), t.local(), what));
    *nonlocal = true;
  } else if (!bound) {
    return Status::FromErrno("bind of " + what);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(t.peer().data()), static_cast<socklen_t>(t.peer().size())) != 0) {
    if (errno == EADDRNOTAVAIL || errno == EADDRINUSE)
      return Status::FromErrno(what + ": another socket of this machine holds this connection (the original "
                               "process still runs? a checkpoint left running cannot be restored beside it: stop "
                               "the original first)");
    return Status::FromErrno("connect (repair mode) of " + what);
  }
  if (transparent >= 0) CRYO_RETURN_IF_ERROR(EndNonlocal(fd, t.family(), transparent, what));
  tcp_repair_opt opts[4];
  int n = 0;
  opts[n++] = {kTcpOptMss, t.mss()};
  if (t.window_scaling()) opts[n++] = {kTcpOptWindow, t.send_wscale() | (t.recv_wscale() << 16)};
  if (t.sack()) opts[n++] = {kTcpOptSackPerm, 0};
  if (t.timestamps()) opts[n++] = {kTcpOptTimestamp, 0};
  if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, static_cast<socklen_t>(n * sizeof(opts[0]))) != 0)
    return Status::FromErrno("TCP_REPAIR_OPTIONS of " + what);
  if (t.timestamps()) CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_TIMESTAMP, static_cast<int>(t.timestamp()), what, "TCP_TIMESTAMP"));
  // The receive queue first: it is still selected from setting its sequence
  // number above (bind, connect and the options do not change that).
  int selected = TCP_RECV_QUEUE;
  CRYO_RETURN_IF_ERROR(FillQueue(fd, TCP_RECV_QUEUE, t.recv_queue(), what, &selected));
  CRYO_RETURN_IF_ERROR(FillQueue(fd, TCP_SEND_QUEUE, t.send_queue().substr(0, sent), what, &selected));
  CRYO_RETURN_IF_ERROR(SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, what, "TCP_REPAIR_QUEUE"));
  tcp_repair_window w{t.snd_wl1(), t.snd_wnd(), t.max_window(), t.rcv_wnd(), t.rcv_wup()};
  AdjustWindowForPeerFin(t, &w.rcv_wup, &w.rcv_wnd);
  if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) != 0)
    return Status::FromErrno("TCP_REPAIR_WINDOW of " + what);
  unsent->assign(t.send_queue().substr(sent));
  return Status::Ok();
}

// --tcp-close: a TCP socket of the connection's family and options that was
// reset by its peer, as the program would find its connection had the peer
// gone: connected over loopback to a listener of cryo's own whose end then
// closes with SO_LINGER {1, 0}, which sends a reset (tcp_disconnect). The
// socket is then CLOSE with ECONNRESET pending (tcp_reset): the next recv(2)
// or send(2) fails with ECONNRESET, after which recv(2) returns 0 (end of
// stream) and send(2) fails with EPIPE; poll(2) shows POLLIN, POLLOUT,
// POLLHUP and POLLERR. Its queues are empty; getsockname(2) shows the loopback
// address it was connected from, getpeername(2) fails with ENOTCONN.
Result<UniqueFd> ResetConnection(const image::TcpSocket& t, const std::string& what) {
  const bool v6 = t.family() == AF_INET6;
  sockaddr_storage a{};
  socklen_t alen;
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&a);
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
    alen = sizeof(*a6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&a);
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    alen = sizeof(*a4);
  }
  UniqueFd listener(::socket(t.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  UniqueFd fd(::socket(t.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!listener.valid() || !fd.valid()) return Status::FromErrno("socket for " + what + " (--tcp-close)");
  CRYO_RETURN_IF_ERROR(RestoreSocketOptions(fd.get(), t.options(), what));
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), alen) != 0 || ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &alen) != 0)
    return Status::FromErrno("loopback listener for " + what + " (--tcp-close)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), alen) != 0)
    return Status::FromErrno("loopback connection for " + what + " (--tcp-close)");
  UniqueFd other(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!other.valid()) return Status::FromErrno("accept for " + what + " (--tcp-close)");
  const linger abort = {1, 0};
  if (::setsockopt(other.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)) != 0)
    return Status::FromErrno("SO_LINGER for " + what + " (--tcp-close)");
  other.reset();  // the reset
  // Loopback delivers it at once; bounded wait all the same.
  pollfd p = {fd.get(), POLLERR, 0};
  if (::poll(&p, 1, 1000) != 1 || !(p.revents & POLLERR))
    return Status::Error(what + ": the reset of --tcp-close did not arrive");
  return fd;
}

class TcpSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_TCP_SOCKET; }
  const char* name() const override { return "TCP connection"; }
  const char* feature() const override { return "tcp-established"; }
  void AddFeatures(const image::Fd& f, std::set<std::string>* features) const override {
    features->insert(feature());
    if (f.tcp_socket().state() != TCP_ESTABLISHED) features->insert("tcp-half-closed");
  }
  bool Handles(const FdSource& s) const override { return GrabTcp(s) >= 0; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    const int fd = GrabTcp(s);  // borrowed (FdSource::Dup)
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    return DumpTcp(s, fd, out->mutable_tcp_socket());
  }
  // Made in cryo (the fd pool), left in repair mode (tcp_session.h).
  Result<int> Open(const image::Fd& f) const override {
    const image::TcpSocket& t = f.tcp_socket();
    const std::string what = Describe(t);
    if (TcpCloseOnRestore()) {
      CRYO_ASSIGN_OR_RETURN(UniqueFd closed, ResetConnection(t, what));
      return Finish(std::move(closed), f);
    }
    UniqueFd fd(::socket(t.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!fd.valid()) return Status::FromErrno("socket for " + what);
    PendingTcp p;
    CRYO_RETURN_IF_ERROR(RestoreTcp(fd.get(), f, what, &p.unsent, &p.nonlocal));
    if (p.nonlocal) p.local = t.local();
    p.fd = UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!p.fd.valid()) return Status::FromErrno("dup of " + what);
    p.reuseaddr = t.reuseaddr();
    p.what = what;
    p.fins = FinsOf(t);
    AddPendingTcp(std::move(p));
    return Finish(std::move(fd), f);
  }

 private:
  // Owner and blocking mode, as the original's.
  static Result<int> Finish(UniqueFd fd, const image::Fd& f) {
    const image::TcpSocket& t = f.tcp_socket();
    if ((t.owner_uid() || t.owner_gid()) && ::fchown(fd.get(), t.owner_uid(), t.owner_gid()) != 0)
      return Status::FromErrno("fchown of " + Describe(t));
    if ((f.flags() & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0)
      return Status::FromErrno("O_NONBLOCK on " + Describe(t));
    return fd.release();
  }
};

}  // namespace

std::string TcpStateName(int state) {
  static const char* const kNames[] = {"?",         "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
                                       "TIME_WAIT", "CLOSE",       "CLOSE_WAIT", "LAST_ACK", "LISTEN",   "CLOSING",
                                       "NEW_SYN_RECV"};
  if (state > 0 && state < static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) return kNames[state];
  return "state " + std::to_string(state);
}

std::string TcpEndpointName(const std::string& addr) {
  const InetEndpoint e = ParseInetEndpoint(addr);
  if (e.ip.empty()) return "(no address)";
  return (e.ipv4 ? e.ip : "[" + e.ip + "]") + ":" + std::to_string(e.port);
}

std::string TcpConnectionName(const image::TcpSocket& t) {
  return std::string(t.family() == AF_INET6 ? "TCP6 " : "TCP ") + TcpEndpointName(t.local()) + " <-> " +
         TcpEndpointName(t.peer());
}

const FdKindHandler* TcpSocketFdHandler() {
  static const TcpSocketHandler h;
  return &h;
}

}  // namespace cryo
