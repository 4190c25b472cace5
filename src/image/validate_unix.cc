// UNIX sockets that do not listen (FD_UNIX_SOCKET, UnixSocket): each record on
// its own (UnixSocketProblem, from the fd rules), then the sockets together
// (ValidateUnixSockets): one record per socket, peers of the image, pairs
// symmetric, names, queues and their senders (net/unix_sockets.cc).
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "image/in_flight.h"
#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

constexpr uint32_t kRcvShutdown = 1, kSendShutdown = 2;  // sk_shutdown bits (include/net/sock.h)
constexpr int kMaxMessages = 1000000;                    // what a dump reads at most (net/unix_queue.cc)
// The refill raises each sender's SO_SNDBUF with SO_SNDBUFFORCE to twice the
// queue (1 KiB per message for the kernel's overhead) plus 1 MiB, at most
// 1 GiB (net/unix_queue.cc RefillUnixQueue): a queue beyond would not fit.
constexpr uint64_t kMaxQueueBytes = ((1ull << 30) - (1ull << 20)) / 2;
constexpr int kSoPassPidfd = 76;  // SO_PASSPIDFD (asm-generic/socket.h)

bool IsPath(const std::string& a) {
  const size_t off = offsetof(sockaddr_un, sun_path);
  return a.size() > off && a[off] != '\0';
}

bool OptionSet(const UnixSocket& u, int name) {
  for (const SocketOption& o : u.options()) {
    int32_t v = 0;
    if (o.level() == SOL_SOCKET && o.name() == name && o.value().size() >= sizeof(v)) {
      std::memcpy(&v, o.value().data(), sizeof(v));
      if (v) return true;
    }
  }
  return false;
}

std::string QueueProblem(const UnixSocket& u) {
  const bool unconnected = !u.peer_ino() && !u.peer_closed();
  if (!u.queue_stored() && (u.queue_size() || u.senders_size())) return "a queue in a record that does not store it";
  if (u.queue_size() > kMaxMessages) return std::to_string(u.queue_size()) + " messages queued (at most a million)";
  uint64_t bytes = 0;
  for (const std::string& m : u.queue()) {
    // A stream has no messages: its bytes are stored in chunks, none empty.
    if (m.empty() && u.type() == SOCK_STREAM) return "an empty chunk in a stream's queue";
    bytes += m.size() + 1024;
  }
  if (bytes > kMaxQueueBytes) return "queue of " + std::to_string(bytes) + " bytes, more than the refill can send";
  // Only a datagram socket not connected has a sender per message
  // (recvfrom(2)); a stream or seqpacket socket without a peer has no queue.
  if (unconnected && u.queue_size() && u.type() != SOCK_DGRAM) return "a queue on a connection without a peer";
  if (unconnected ? u.senders_size() != u.queue_size() : u.senders_size() != 0)
    return std::to_string(u.senders_size()) + " senders for " + std::to_string(u.queue_size()) +
           " messages (one each, for a socket that is not connected only)";
  for (const std::string& s : u.senders())
    if (!s.empty())
      if (std::string p = UnixAddressProblem(s); !p.empty()) return "sender's address: " + p;
  // Fds in flight (net/unix_in_flight.cc): each group with a message of the
  // queue, in order, at most SCM_MAX_FD (253) each, of the kinds a restore
  // can send without a process.
  int64_t prev_message = -1;
  for (const UnixInFlight& m : u.in_flight()) {
    if (static_cast<int64_t>(m.message()) <= prev_message || m.message() >= static_cast<uint32_t>(u.queue_size()))
      return "fds in flight with message " + std::to_string(m.message()) + ", not a message of the queue in order";
    prev_message = m.message();
    if (m.fds().empty() || m.fds_size() > 253)
      return std::to_string(m.fds_size()) + " fds in flight with one message (1 to 253)";
    for (const Fd& f : m.fds())
      if (!SendableInFlight(f.kind()))
        return "an fd in flight of kind " + std::to_string(f.kind()) + ", which a restore cannot send";
  }
  // Queued messages carry their senders' credentials (net/unix_sockets.cc).
  if (u.queue_size() && (OptionSet(u, SO_PASSCRED) || OptionSet(u, kSoPassPidfd)))
    return "a queue on a socket that receives credentials (SO_PASSCRED, SO_PASSPIDFD)";
  return "";
}

}  // namespace

std::string UnixAddressProblem(const std::string& a) {
  sa_family_t fam = 0;
  if (a.size() >= sizeof(fam)) std::memcpy(&fam, a.data(), sizeof(fam));
  if (fam != AF_UNIX) return "address of another family";
  const size_t off = offsetof(sockaddr_un, sun_path);
  if (a.size() <= off + 1 || a.size() > sizeof(sockaddr_un)) return "UNIX address without a name, or too long";
  // A path name ends at its NUL (abstract names start with one).
  if (a[off] != '\0' && a.find('\0', off) != std::string::npos && a.find('\0', off) != a.size() - 1)
    return "UNIX path with a NUL inside";
  if (a[off] != '\0' && a[off] != '/') return "relative UNIX path";
  return "";
}

std::string UnixSocketProblem(const Fd& f) {
  const UnixSocket& u = f.unix_socket();
  // socket(2) makes it O_RDWR; the restore sets what F_SETFL can set on a
  // socket (O_DIRECT is refused there: no direct_IO; nginx sets O_ASYNC).
  if ((f.flags() & O_ACCMODE) != O_RDWR || (f.flags() & ~(O_RDWR | O_NONBLOCK | O_ASYNC | O_APPEND | O_NOATIME)))
    return "flags " + Hex(f.flags()) + " a socket cannot have";
  if (u.type() != SOCK_STREAM && u.type() != SOCK_DGRAM && u.type() != SOCK_SEQPACKET)
    return "UNIX socket type " + std::to_string(u.type()) + " unknown";
  if (!u.ino()) return "UNIX socket without an inode";
  if (u.peer_ino() == u.ino()) return "UNIX socket that is its own peer";
  for (const std::string* a : {&u.address(), &u.peer_address()})
    if (!a->empty())
      if (std::string p = UnixAddressProblem(*a); !p.empty()) return (a == &u.address() ? "" : "peer ") + p;
  if (u.state() != TCP_ESTABLISHED && u.state() != TCP_CLOSE)
    return "UNIX socket state " + std::to_string(u.state()) + " (neither connected nor closed)";
  if (u.shutdown() & ~(kRcvShutdown | kSendShutdown)) return "shutdown bits " + Hex(u.shutdown()) + " unknown";
  // A closed peer shuts its stream end down both ways (unix_release_sock);
  // a datagram socket connected to a closed one is refused at dump.
  if (u.peer_closed() && (u.type() == SOCK_DGRAM || u.peer_ino() || u.shutdown() != (kRcvShutdown | kSendShutdown)))
    return "peer_closed on a datagram socket, with a peer, or not shut down both ways";
  // A connection not accepted yet: a stream or seqpacket client end alone,
  // that never sent anything (net/unix_pending.h).
  if (u.accept_pending() && (u.type() == SOCK_DGRAM || u.peer_ino() || u.peer_closed() || u.queue_size() ||
                             u.state() != TCP_ESTABLISHED))
    return "a connection waiting to be accepted that is a datagram socket, has a peer, or a queue";
  // A peer let go (--ext-unix-sk): a connection's end closed by it, or a
  // datagram socket with its peer's name and nothing queued from it.
  if (u.peer_outside() && (u.peer_ino() || u.accept_pending() ||
                           (u.type() == SOCK_DGRAM ? u.peer_address().empty() || u.peer_closed() || u.queue_size()
                                                   : !u.peer_closed())))
    return "a peer outside the tree on a socket with a peer in the image, without a name to connect to, a queue "
           "from it or not closed";
  if (std::string p = QueueProblem(u); !p.empty()) return p;
  if (std::string p = SocketOptionsProblem(u.options(), false); !p.empty()) return p;
  if (u.owner_uid() == UINT32_MAX || u.owner_gid() == UINT32_MAX) return "socket owner -1";
  // A socket file (its attributes, its removal, a borrowed name) only for a path.
  const bool path = IsPath(u.address());
  if ((u.has_file() || u.file_unlinked() || u.name_borrowed()) && !path)
    return "socket file attributes or a borrowed name on a socket without a path";
  if (u.has_file() + u.file_unlinked() + u.name_borrowed() > 1)
    return "socket file attributes, removed file and borrowed name together";
  if (u.has_file())
    if (std::string p = FileAttrsProblem(u.file()); !p.empty()) return "socket file: " + p;
  // SO_PEERCRED: ids of -1 on a socket that never had a peer (cred_to_ucred);
  // a connection's ends need real ones (checked with its peer).
  if (u.peer_pid() < 0 || u.peer_pid() > kPidMax) return "peer pid " + std::to_string(u.peer_pid()) + " out of range";
  return "";
}

Status ValidateUnixSockets(const LoadedImage& img, const Index& index) {
  (void)index;
  struct Holder {
    int pid;
    const Fd* fd;
  };
  std::map<uint64_t, std::vector<Holder>> by_ino;
  std::map<std::string, int> listener_names;  // UNIX listeners' addresses
  std::map<uint64_t, const ListenSocket*> pending;  // client inode -> the listener whose queue holds it
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds()) {
      if (f.kind() == FD_UNIX_SOCKET) by_ino[f.unix_socket().ino()].push_back({pid, &f});
      if (f.kind() == FD_LISTEN_SOCKET && f.listen_socket().family() == AF_UNIX)
        listener_names[f.listen_socket().address()] = pid;
    }
  // Accept queues: a listener's fds all record the same one; a client is in
  // one queue, once.
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds()) {
      const ListenSocket& l = f.listen_socket();
      if (f.kind() != FD_LISTEN_SOCKET || !l.pending_clients_size()) continue;
      const std::string what = "fd " + std::to_string(f.fd()) + ": a listener's connection waiting to be accepted";
      if (l.family() != AF_UNIX || l.file_unlinked())
        return Bad(img, FdsName(pid), what + " on a listener that is not a UNIX one with a name to connect to");
      std::set<uint64_t> seen;
      for (uint64_t c : l.pending_clients()) {
        auto it = by_ino.find(c);
        if (it == by_ino.end() || !it->second[0].fd->unix_socket().accept_pending() ||
            it->second[0].fd->unix_socket().type() != l.type())
          return Bad(img, FdsName(pid), what + ": its client " + std::to_string(c) +
                                            " is no pending UNIX socket of the image of the listener's type");
        auto [at, fresh] = pending.emplace(c, &l);
        if (!seen.insert(c).second || (!fresh && at->second->SerializeAsString() != l.SerializeAsString()))
          return Bad(img, FdsName(pid), what + ": client " + std::to_string(c) + " is in two accept queues");
      }
    }
  std::map<std::string, uint64_t> names;  // own (not borrowed) names of the sockets
  std::set<std::string> dgram_names;      // datagram sockets' names: the senders a refill uses
  for (const auto& [ino, holders] : by_ino) {
    const UnixSocket& u = holders[0].fd->unix_socket();
    if (u.type() == SOCK_DGRAM && !u.address().empty()) dgram_names.insert(u.address());
  }
  for (const auto& [ino, holders] : by_ino) {
    const UnixSocket& first = holders[0].fd->unix_socket();
    const std::string file = FdsName(holders[0].pid);
    const std::string what = "fd " + std::to_string(holders[0].fd->fd()) + ": UNIX socket " + std::to_string(ino);
    // Every fd on the socket carries the same record, the queue in one only.
    const UnixSocket* stored = nullptr;
    UnixSocket bare = first;
    bare.clear_queue();
    bare.clear_senders();
    bare.clear_queue_stored();
    for (const Holder& h : holders) {
      UnixSocket other = h.fd->unix_socket();
      if (other.queue_stored()) {
        if (stored) return Bad(img, FdsName(h.pid), "fd " + std::to_string(h.fd->fd()) + ": UNIX socket " +
                                                        std::to_string(ino) + " stores its queue twice");
        stored = &h.fd->unix_socket();
      }
      other.clear_queue();
      other.clear_senders();
      other.clear_queue_stored();
      if (other.SerializeAsString() != bare.SerializeAsString())
        return Bad(img, FdsName(h.pid), "fd " + std::to_string(h.fd->fd()) + ": UNIX socket " + std::to_string(ino) +
                                            " recorded otherwise by another fd");
    }
    if (!stored) return Bad(img, file, what + " stores its queue in no record");
    const UnixSocket& u = *stored;
    if (u.accept_pending() && !pending.count(ino))
      return Bad(img, file, what + " waits to be accepted, but in no listener's queue of the image");
    // The peer: another socket of the image, of the same type, connected back
    // (a pair, made with socketpair(2) under the same ids on both ends) or,
    // for a datagram socket, a named one it sends to by default.
    const bool unconnected = !u.peer_ino() && !u.peer_closed();
    bool one_way = false;
    if (u.peer_ino()) {
      auto it = by_ino.find(u.peer_ino());
      if (it == by_ino.end())
        return Bad(img, file, what + ": its peer " + std::to_string(u.peer_ino()) + " is not a socket of the image");
      const UnixSocket& peer = it->second[0].fd->unix_socket();
      if (peer.type() != u.type()) return Bad(img, file, what + ": its peer is of another type");
      one_way = peer.peer_ino() != ino;
      if (one_way && (u.type() != SOCK_DGRAM || peer.address().empty() || peer.file_unlinked()))
        return Bad(img, file, what + ": its peer is not connected back (only a datagram socket's may be, when it has "
                                     "a name to connect to)");
      if (!one_way && (u.peer_uid() != peer.peer_uid() || u.peer_gid() != peer.peer_gid()))
        return Bad(img, file, what + ": the ends of its pair have different peer credentials");
    }
    // connect(2) and socketpair(2) give a connection's ends real ids; a
    // datagram socket connected back by name has none (-1), kept as cryo's.
    if (u.type() != SOCK_DGRAM && (u.peer_closed() || u.peer_ino()) &&
        (u.peer_uid() == UINT32_MAX || u.peer_gid() == UINT32_MAX))
      return Bad(img, file, what + ": a connection's peer credentials -1");
    // Messages sent to it by name: it needs one, and each named sender is a
    // datagram socket of the image.
    if (u.queue_size() && (unconnected || one_way) && (u.address().empty() || u.file_unlinked()))
      return Bad(img, file, what + " has messages queued but no name to send them to again");
    for (const std::string& s : u.senders())
      if (!s.empty() && !dgram_names.count(s))
        return Bad(img, file, what + ": a message from " + Printable(s) + ", not a datagram socket of the image");
    // Names: a borrowed one is a listener's (accepted connections); own
    // names are unique (bind(2) would fail), but for a path whose file was
    // removed, which another socket may have bound again.
    if (u.name_borrowed() && !listener_names.count(u.address()))
      return Bad(img, file, what + ": its borrowed name is no UNIX listener's of the image");
    if (!u.address().empty() && !u.name_borrowed() && !u.file_unlinked()) {
      if (listener_names.count(u.address()))
        return Bad(img, file, what + ": its name is a listener's, but not recorded as borrowed");
      auto [n, fresh] = names.emplace(u.address(), ino);
      if (!fresh) return Bad(img, file, what + ": its name is also socket " + std::to_string(n->second) + "'s");
    }
  }
  return Status::Ok();
}

}  // namespace cryo::image::validate
