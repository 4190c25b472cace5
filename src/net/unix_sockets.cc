// UNIX sockets across the tree: matched to their peers and their queues read
// at dump (LinkUnixSockets), made again together at restore (UnixSocketSet).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <set>

#include "files/fd_kind.h"
#include "image/in_flight.h"
#include "net/socket_options.h"
#include "net/unix_in_flight.h"
#include "net/unix_pending.h"
#include "net/unix_queue.h"
#include "net/unix_socket.h"
#include "net/unix_socket_file.h"
#include "proc/proc.h"

namespace cryo {

namespace {

constexpr int kRcvShutdown = 1, kSendShutdown = 2;

bool IsAbstract(const std::string& a) {
  const size_t off = offsetof(struct sockaddr_un, sun_path);
  return a.size() > off && a[off] == '\0';
}

std::string PathOf(const std::string& a) {
  const size_t off = offsetof(struct sockaddr_un, sun_path);
  return a.size() > off && a[off] != '\0' ? std::string(a.c_str() + off) : "";
}

std::string DescribeAddress(const std::string& a) {
  if (IsAbstract(a)) return "@" + a.substr(offsetof(struct sockaddr_un, sun_path) + 1);
  return PathOf(a);
}

// Whether a socket option of `u` is set (non-zero).
bool OptionSet(const image::UnixSocket& u, int name) {
  for (const image::SocketOption& o : u.options())
    if (o.level() == SOL_SOCKET && o.name() == name && o.value().find_first_not_of('\0') != std::string::npos)
      return true;
  return false;
}

// Who outside the tree holds socket inode `ino`, for a refusal.
std::string OutsideHolders(uint64_t ino, const std::set<pid_t>& tree) {
  const std::string link = "socket:[" + std::to_string(ino) + "]";
  std::string who;
  (void)proc::ForEachFdOutside(tree, [&](const proc::OutsideFd& o) {
    if (o.link == link && who.size() < 200) who += (who.empty() ? "" : ", ") + NamePid(o.pid) + " fd " + o.fd;
    return Status::Ok();
  });
  return who;
}

// A duplicate of `pid`'s `fd` in cryo.
UniqueFd GrabFd(pid_t pid, int fd) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return UniqueFd();
  return UniqueFd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
}

// socketpair(2) under effective ids `uid`, `gid`, which both ends show as
// their peer's (SO_PEERCRED).
Status SocketpairAs(int type, uid_t uid, gid_t gid, int sv[2], const std::string& what) {
  return WithEffectiveIds(uid, gid, [&]() -> Status {
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return Status::FromErrno("socketpair for " + what);
    return Status::Ok();
  }, "the socketpair for " + what);
}

struct Holder {
  pid_t pid;
  image::Fd* fd;
};

// --ext-unix-sk: the socket of `holders` whose peer is outside the tree
// forgets it. A connection's end comes back closed by its peer (its queue
// kept, shut down both ways, as unix_release_sock leaves it); a datagram
// socket is connected again by the peer's name.
Status LetPeerGo(std::vector<Holder>& holders, const std::string& what) {
  const image::UnixSocket& u = holders[0].fd->unix_socket();
  const bool dgram = u.type() == SOCK_DGRAM;
  if (dgram && !IsAbstract(u.peer_address()) && PathOf(u.peer_address()).empty())
    return Status::Error(what + ": that peer has no name to connect to again");
  for (Holder& h : holders) {
    image::UnixSocket* v = h.fd->mutable_unix_socket();
    v->set_peer_ino(0);
    v->set_peer_outside(true);
    if (!dgram) v->set_peer_closed(true);  // shut down both ways once its queue is read
  }
  return Status::Ok();
}

}  // namespace

Status LinkUnixSockets(const std::vector<std::pair<pid_t, image::FdTable*>>& tables, bool ext_peers,
                       std::set<std::string>* features, InFlightFiles* in_flight, const DumpScope* scope) {
  std::map<uint64_t, std::vector<Holder>> by_ino;
  std::map<std::string, int> names;  // address -> sockets named so (listeners too)
  std::set<pid_t> tree;
  std::set<std::string> dgram_names;  // names of the tree's datagram sockets (senders to refill from)
  for (const auto& [pid, table] : tables) {
    tree.insert(pid);
    for (image::Fd& f : *table->mutable_fds()) {
      if (f.kind() == image::FD_UNIX_SOCKET) {
        if (f.unix_socket().type() == SOCK_DGRAM && !f.unix_socket().address().empty())
          dgram_names.insert(f.unix_socket().address());
        std::vector<Holder>& h = by_ino[f.unix_socket().ino()];
        if (h.empty() && !f.unix_socket().address().empty()) ++names[f.unix_socket().address()];
        h.push_back({pid, &f});
      } else if (f.kind() == image::FD_LISTEN_SOCKET && f.listen_socket().family() == AF_UNIX) {
        names[f.listen_socket().address()] += 2;  // counted once per fd: any listener makes it borrowed
      }
    }
  }
  std::set<uint64_t> tree_sockets;
  for (const auto& [ino, holders] : by_ino) tree_sockets.insert(ino);
  std::vector<std::string> refused;
  // Connections waiting in an accept queue: their clients must be in the tree.
  const std::map<uint64_t, std::string> pending = PendingClientsOf(tables);
  for (const auto& [client, listener] : pending) {
    if (by_ino.count(client)) continue;
    const std::string who = OutsideHolders(client, tree);
    refused.push_back(listener + " has a connection waiting to be accepted from socket:[" + std::to_string(client) +
                      "], " + (who.empty() ? "held by no process (a socket in flight)" : "held outside the tree by " + who) +
                      " (dump that process with the tree, or accept the connection first)");
  }
  for (auto& [ino, holders] : by_ino) {
    image::UnixSocket* u = holders[0].fd->mutable_unix_socket();
    const std::string what = "pid " + std::to_string(holders[0].pid) + " fd " + std::to_string(holders[0].fd->fd()) +
                             ": " + DescribeUnixSocket(*u);
    // A connection its listener has not accepted yet (a client may have shut
    // it down both ways, which looks like a closed peer).
    if (pending.count(ino) && u->type() != SOCK_DGRAM) {
      for (Holder& h : holders) {
        h.fd->mutable_unix_socket()->set_accept_pending(true);
        h.fd->mutable_unix_socket()->set_peer_closed(false);
      }
      UniqueFd fd = GrabFd(holders[0].pid, holders[0].fd->fd());
      if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + what);
      Status st = CheckPendingClientSentNothing(fd.get(), what);
      if (!st.ok()) refused.push_back(st.ToString());
      u->set_queue_stored(true);  // nothing can have sent to it
      continue;
    }
    if (u->accept_pending()) {
      refused.push_back(what + " waits to be accepted by a listener outside the tree (dump the listener's process "
                               "with it, or let it accept the connection first)");
      continue;
    }
    const image::UnixSocket* peer = nullptr;
    const Holder* peer_holder = nullptr;
    if (u->peer_ino()) {
      auto it = by_ino.find(u->peer_ino());
      if (it == by_ino.end()) {
        const std::string who = OutsideHolders(u->peer_ino(), tree);
        if (ext_peers && !who.empty()) {
          Status st = LetPeerGo(holders, what + " (its peer is outside the tree, held by " + who + ")");
          if (!st.ok()) {
            refused.push_back(st.ToString());
            continue;
          }
          if (features) features->insert("unix-external-peers");
        } else {
          refused.push_back(what + (who.empty() ? ": its peer (socket:[" + std::to_string(u->peer_ino()) +
                                                    "]) is held by no process (a connection waiting in a listener's "
                                                    "accept queue, or a socket in flight), not supported yet"
                                              : ": its peer is outside the tree, held by " + who +
                                                    " (dump that process with the tree, close the connection, or "
                                                    "let it go with --ext-unix-sk)"));
          continue;
        }
      } else {
        peer_holder = &it->second[0];
        peer = &peer_holder->fd->unix_socket();
        // A datagram socket's default peer (connect(2)) need not be connected
        // back: connected again by its name at restore.
        if (peer->peer_ino() != ino && (peer->address().empty() || peer->file_unlinked())) {
          refused.push_back(what + ": its default peer has no name to connect to again (unnamed, or its file was "
                                   "removed)");
          continue;
        }
      }
    }
    const bool paired = peer && peer->peer_ino() == ino;
    // socketpair(2) gives both ends its caller's credentials (SO_PEERCRED):
    // made again under those ids. An accepted connection between two users
    // would need each end's own.
    if (paired && (peer->peer_uid() != u->peer_uid() || peer->peer_gid() != u->peer_gid())) {
      refused.push_back(what + ": its ends have different peer credentials (SO_PEERCRED uid " +
                        std::to_string(u->peer_uid()) + " and " + std::to_string(peer->peer_uid()) +
                        ": a connection between two users), not supported yet");
      continue;
    }
    if (!u->address().empty() && names[u->address()] > 1) {
      if (IsAbstract(u->address())) {
        refused.push_back(what + ": its abstract name is a listener's (an accepted connection), not supported yet");
        continue;
      }
      u->set_name_borrowed(true);
      u->clear_file();
      u->set_file_unlinked(false);
    }
    UniqueFd fd = GrabFd(holders[0].pid, holders[0].fd->fd());
    if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + what);
    // The sender of all the queue of a pair, whose SIOCOUTQ vouches for it.
    UniqueFd peer_fd = paired ? GrabFd(peer_holder->pid, peer_holder->fd->fd()) : UniqueFd();
    if (paired && !peer_fd.valid()) return Status::FromErrno("pidfd_getfd of the peer of " + what);
    const bool unconnected = !peer && !u->peer_closed();
    std::vector<QueuedFds> queued;
    Status st = PeekUnixQueue(fd.get(), u->type(), u->shutdown() & kRcvShutdown, peer_fd.get(), what, u->mutable_queue(),
                              unconnected ? u->mutable_senders() : nullptr, in_flight ? &queued : nullptr);
    if (st.ok() && !queued.empty()) st = in_flight->Add(u, std::move(queued), tree_sockets, what, scope, features);
    if (!st.ok()) {
      refused.push_back(st.ToString());
      continue;
    }
    u->set_queue_stored(true);
    if (u->peer_outside() && u->type() != SOCK_DGRAM)
      for (Holder& h : holders) h.fd->mutable_unix_socket()->set_shutdown(kRcvShutdown | kSendShutdown);
    // Only its peer outside could send to a connected datagram socket, and
    // cryo cannot send in its name.
    if (u->peer_outside() && u->type() == SOCK_DGRAM && u->queue_size()) {
      refused.push_back(what + " has " + std::to_string(u->queue_size()) +
                        " messages queued from its peer outside the tree, which cryo cannot send again in its name");
      continue;
    }
    // Messages sent to it by name (recvfrom): from its default peer, or, when
    // not connected, from anyone; sent again by name at restore.
    if (u->queue_size() && (unconnected || (peer && !paired)) && (u->address().empty() || u->file_unlinked())) {
      refused.push_back(what + " has " + std::to_string(u->queue_size()) +
                        " messages queued but no name to send them to again (unnamed, or its file was removed)");
      continue;
    }
    for (const std::string& from : u->senders())
      if (!from.empty() && !dgram_names.count(from)) {
        refused.push_back(what + " has messages queued from " + DescribeAddress(from) +
                          ", a socket outside the tree (dump its process with the tree, or drain the queue)");
        break;
      }
    // The queued messages carry their senders' credentials, which a restore
    // cannot give back (they would be cryo's).
    if (u->queue_size() && (OptionSet(*u, SO_PASSCRED) || OptionSet(*u, 76 /* SO_PASSPIDFD */)))
      refused.push_back(what + " receives its senders' credentials (SO_PASSCRED or SO_PASSPIDFD) and has " +
                        std::to_string(u->queue_size()) + " messages queued, whose credentials cryo cannot restore");
  }
  if (refused.empty()) return Status::Ok();
  std::string all;
  for (const std::string& r : refused) all += (all.empty() ? "" : "\n") + r;
  return Status::Error(all);
}

Result<UnixSocketSet> UnixSocketSet::Build(const image::LoadedImage& img) {
  std::map<uint64_t, const image::UnixSocket*> recs;
  for (const image::UnixSocket* u : image::QueueHolders(img)) recs[u->ino()] = u;
  UnixSocketSet set;
  std::map<uint64_t, UniqueFd> closed_peers;  // the other end of a pair whose peer was closed
  for (const auto& [ino, u] : recs) {
    if (set.fds_.count(ino)) continue;
    const std::string what = DescribeUnixSocket(*u);
    auto peer = recs.find(u->peer_ino());
    if (u->peer_ino() && peer == recs.end()) return Status::Error(what + ": its peer is not in the image");
    if ((u->peer_ino() && peer->second->peer_ino() == ino) || u->peer_closed()) {
      int sv[2];
      CRYO_RETURN_IF_ERROR(SocketpairAs(u->type(), u->peer_uid(), u->peer_gid(), sv, what));
      set.fds_[ino] = UniqueFd(sv[0]);
      (u->peer_ino() ? set.fds_[u->peer_ino()] : closed_peers[ino]) = UniqueFd(sv[1]);
    } else {
      UniqueFd fd(::socket(AF_UNIX, u->type() | SOCK_CLOEXEC, 0));
      if (!fd.valid()) return Status::FromErrno("socket for " + what);
      set.fds_[ino] = std::move(fd);
    }
  }
  // Options, then names: a borrowed name first (bound, its file removed for
  // its listener to bind), then the sockets' own.
  for (const auto& [ino, u] : recs)
    CRYO_RETURN_IF_ERROR(RestoreSocketOptions(set.fds_[ino].get(), u->options(), DescribeUnixSocket(*u)));
  for (bool borrowed : {true, false})
    for (const auto& [ino, u] : recs) {
      if (u->address().empty() || u->name_borrowed() != borrowed) continue;
      const std::string what = DescribeUnixSocket(*u);
      const int fd = set.fds_[ino].get();
      const auto* addr = reinterpret_cast<const sockaddr*>(u->address().data());
      const auto len = static_cast<socklen_t>(u->address().size());
      if (IsAbstract(u->address())) {
        if (::bind(fd, addr, len) != 0) return Status::FromErrno("bind to " + what);
      } else if (borrowed) {
        const std::string path = PathOf(u->address());
        if (::bind(fd, addr, len) != 0 && !(errno == EADDRINUSE && ::unlink(path.c_str()) == 0 && ::bind(fd, addr, len) == 0))
          return Status::FromErrno("bind to " + what);
        if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path + " after binding " + what);
      } else {
        image::ListenSocket l;
        l.set_address(u->address());
        l.set_type(u->type());
        if (u->has_file()) *l.mutable_file() = u->file();
        l.set_file_unlinked(u->file_unlinked());
        CRYO_RETURN_IF_ERROR(BindUnixSocketFile(fd, l, what));
      }
    }
  // Default peers (a datagram socket connected to one that is not connected
  // back), by name now that every name is bound.
  for (const auto& [ino, u] : recs) {
    // A peer outside the image (--ext-unix-sk), by its name: it must be there.
    const std::string& outside = u->peer_address();
    if (u->peer_outside() && u->type() == SOCK_DGRAM &&
        ::connect(set.fds_[ino].get(), reinterpret_cast<const sockaddr*>(outside.data()),
                  static_cast<socklen_t>(outside.size())) != 0)
      return Status::FromErrno("connect of " + DescribeUnixSocket(*u) + " to its peer outside the image, " +
                               DescribeAddress(outside));
    auto peer = recs.find(u->peer_ino());
    if (!u->peer_ino() || peer->second->peer_ino() == ino) continue;
    const std::string& to = peer->second->address();
    if (::connect(set.fds_[ino].get(), reinterpret_cast<const sockaddr*>(to.data()), static_cast<socklen_t>(to.size())) != 0)
      return Status::FromErrno("connect of " + DescribeUnixSocket(*u) + " to its default peer");
  }
  set.recs_ = std::move(recs);
  set.closed_peers_ = std::move(closed_peers);
  return set;
}

Status UnixSocketSet::FillQueues(const std::function<int(const image::Fd&)>& pool_fd) {
  std::map<uint64_t, const image::UnixSocket*>& recs = recs_;
  UnixSocketSet& set = *this;
  std::map<uint64_t, UniqueFd>& closed_peers = closed_peers_;
  // Queues: from each socket's peer; to a socket not connected back or not
  // connected at all, by its name from each message's sender (a new unnamed
  // socket for an unnamed one), each message with the fds in flight with it.
  // Then the closed peers go, and shutdowns.
  std::map<std::string, int> by_name;  // datagram sockets by name: senders to refill from
  for (const auto& [ino, u] : recs)
    if (u->type() == SOCK_DGRAM && !u->address().empty()) by_name[u->address()] = fds_[ino].get();
  UniqueFd unnamed;
  for (const auto& [ino, u] : recs) {
    if (u->queue().empty()) continue;
    const std::string what = DescribeUnixSocket(*u);
    std::map<int, std::vector<int>> in_flight;  // message -> pool fds
    for (const image::UnixInFlight& m : u->in_flight())
      for (const image::Fd& f : m.fds()) {
        const int fd = pool_fd(f);
        if (fd < 0) return Status::Error(what + ": a file descriptor in flight has no open file description in the pool");
        in_flight[static_cast<int>(m.message())].push_back(fd);
      }
    const auto* fds = in_flight.empty() ? nullptr : &in_flight;
    auto peer = recs.find(u->peer_ino());
    if (u->peer_ino() && peer->second->peer_ino() == ino) {
      CRYO_RETURN_IF_ERROR(RefillUnixQueue({set.fds_[u->peer_ino()].get()}, u->queue(), "", what, fds));
    } else if (u->peer_closed()) {
      CRYO_RETURN_IF_ERROR(RefillUnixQueue({closed_peers[ino].get()}, u->queue(), "", what, fds));
    } else if (u->peer_ino()) {
      CRYO_RETURN_IF_ERROR(RefillUnixQueue({set.fds_[u->peer_ino()].get()}, u->queue(), u->address(), what, fds));
    } else {
      std::vector<int> senders;
      for (const std::string& from : u->senders()) {
        if (from.empty() && !unnamed.valid()) {
          unnamed.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
          if (!unnamed.valid()) return Status::FromErrno("socket to refill " + what);
        }
        auto it = by_name.find(from);
        if (!from.empty() && it == by_name.end())
          return Status::Error(what + ": a message from " + DescribeAddress(from) + ", which is not in the image");
        senders.push_back(from.empty() ? unnamed.get() : it->second);
      }
      CRYO_RETURN_IF_ERROR(RefillUnixQueue(senders, u->queue(), u->address(), what, fds));
    }
  }
  closed_peers.clear();
  for (const auto& [ino, u] : recs) {
    const int fd = set.fds_[ino].get();
    const std::string what = DescribeUnixSocket(*u);
    // A pending connection is shut down once connected (ConnectPendingClients).
    const uint32_t bits = u->peer_closed() || u->accept_pending() ? 0 : u->shutdown() & (kRcvShutdown | kSendShutdown);
    if (bits && ::shutdown(fd, bits == 3 ? SHUT_RDWR : bits == kRcvShutdown ? SHUT_RD : SHUT_WR) != 0)
      return Status::FromErrno("shutdown of " + what);
    // The socket's own inode: its owner is the socket's sk_uid (sockfs_setattr);
    // set even to root's, as a pair made under other ids is theirs.
    if (::fchown(fd, u->owner_uid(), u->owner_gid()) != 0)
      return Status::FromErrno("fchown of " + what);
  }
  return Status::Ok();
}

Result<int> UnixSocketSet::Open(const image::Fd& f) const {
  auto it = fds_.find(f.unix_socket().ino());
  if (it == fds_.end()) return Status::Error(DescribeUnixSocket(f.unix_socket()) + " is not in the image");
  const int fd = ::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("dup of " + DescribeUnixSocket(f.unix_socket()));
  return fd;
}

}  // namespace cryo
