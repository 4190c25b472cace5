// The fd handler of UNIX sockets that do not listen: per fd, the socket's
// type, inode, peer (sock_diag UNIX_DIAG_PEER), state and shutdown, names,
// options, owner and peer credentials. The queue is read later, once per
// socket (LinkUnixSockets, unix_sockets.cc).
#include "net/unix_socket.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "net/socket_options.h"
#include "net/unix_diag.h"
#include "net/unix_socket_file.h"

namespace cryo {

namespace {

const char* TypeName(int type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "datagram";
    case SOCK_SEQPACKET: return "seqpacket";
  }
  return "unknown-type";
}

std::string NameOf(const std::string& a) {
  const size_t off = offsetof(struct sockaddr_un, sun_path);
  if (a.size() <= off) return "";
  if (a[off] == '\0') return "@" + a.substr(off + 1);
  return std::string(a.c_str() + off, strnlen(a.c_str() + off, a.size() - off));
}

// A UNIX socket in cryo (FdSource::Dup, borrowed) that does not listen; -1
// otherwise.
int GrabUnixSocket(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return -1;
  const FdSource::SocketKind& k = s.Socket();
  if (k.family != AF_UNIX || k.accepting == 1) return -1;
  return s.Dup();
}

std::string Sockname(int fd, bool peer) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (r != 0 || len <= offsetof(struct sockaddr_un, sun_path)) return "";
  return std::string(reinterpret_cast<const char*>(&addr), len);
}

class UnixSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_UNIX_SOCKET; }
  const char* name() const override { return "UNIX socket"; }
  const char* feature() const override { return "unix-sockets"; }
  bool Handles(const FdSource& s) const override { return GrabUnixSocket(s) >= 0; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    const int fd = GrabUnixSocket(s);  // borrowed (FdSource::Dup)
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    image::UnixSocket* u = out->mutable_unix_socket();
    u->set_type(s.Socket().type);
    u->set_ino(s.st.st_ino);
    u->set_address(Sockname(fd, false));
    u->set_peer_address(Sockname(fd, true));
    u->set_owner_uid(s.st.st_uid);
    u->set_owner_gid(s.st.st_gid);
    const std::string what = s.what() + ": " + DescribeUnixSocket(*u);
    if (u->type() != SOCK_STREAM && u->type() != SOCK_DGRAM && u->type() != SOCK_SEQPACKET)
      return Status::Error(what + " is of a type cryo does not know");
    CRYO_ASSIGN_OR_RETURN(UnixSocketDiag diag, QueryUnixSocket(s.st.st_ino));
    u->set_peer_ino(diag.peer_ino);
    u->set_state(diag.state);
    u->set_shutdown(diag.shutdown);
    const bool connection = u->type() != SOCK_DGRAM;
    // The peer's close shuts this end down both ways (unix_release_sock); a
    // connection still waiting in a listener's accept queue has no peer
    // inode either (the new socket has no inode until accept(2)).
    // Which it is, LinkUnixSockets tells from the listeners' accept queues
    // (a client may have shut its pending connection down both ways too).
    if (connection && diag.state == TCP_ESTABLISHED && !diag.peer_ino) {
      if ((diag.shutdown & 3) == 3)
        u->set_peer_closed(true);
      else
        u->set_accept_pending(true);
    }
    if (diag.state != TCP_ESTABLISHED && diag.state != TCP_CLOSE)
      return Status::Error(what + " is in state " + std::to_string(diag.state) +
                           " (connecting?), which cryo cannot restore");
    // A datagram socket's state says little (socketpair(2) makes both ends
    // TCP_ESTABLISHED, so does a bind on this kernel): it has a peer when
    // getpeername(2) answers.
    sockaddr_storage ignored{};
    socklen_t ignored_len = sizeof(ignored);
    const bool has_peer = ::getpeername(fd, reinterpret_cast<sockaddr*>(&ignored), &ignored_len) == 0;
    if (u->type() == SOCK_DGRAM && has_peer && !diag.peer_ino)
      return Status::Error(what + " is connected to a datagram socket that was closed, which cryo cannot restore yet");
    const std::string name = NameOf(u->address());
    if (!name.empty() && name[0] != '@' && name[0] != '/')
      return Status::Error(what + " was bound to a relative path, which cryo cannot find again (bind it to an "
                                  "absolute one)");
    if (!name.empty() && name[0] == '/') {
      image::ListenSocket l;
      l.set_address(u->address());
      l.set_type(u->type());
      CRYO_RETURN_IF_ERROR(DumpUnixSocketFile(s, diag, &l, what));
      if (l.has_file()) *u->mutable_file() = l.file();
      u->set_file_unlinked(l.file_unlinked());
    }
    struct ucred c{};
    socklen_t len = sizeof(c);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0) {
      u->set_peer_pid(c.pid);
      u->set_peer_uid(c.uid);
      u->set_peer_gid(c.gid);
    }
    return DumpSocketOptions(fd, AF_UNIX, u->type(), 0, what, u->mutable_options());
  }
  // Made by the fd pool (UnixSocketSet), with their peers.
  Result<int> Open(const image::Fd& f) const override {
    return Status::Error(DescribeUnixSocket(f.unix_socket()) + " must come from the fd pool");
  }
};

}  // namespace

std::string DescribeUnixSocket(const image::UnixSocket& u) {
  const std::string name = NameOf(u.address());
  std::string d = (name.empty() ? "unnamed UNIX " : "UNIX ") + std::string(TypeName(u.type())) + " socket";
  if (!name.empty()) d += " " + name;
  const std::string peer = NameOf(u.peer_address());
  if (u.peer_outside() && u.type() == SOCK_DGRAM)
    d += " connected to " + peer + " outside the tree";
  else if (u.peer_outside())
    d += " whose peer outside the tree was let go";
  else if (u.accept_pending())
    d += " connecting to " + (peer.empty() ? std::string("a listener") : peer);
  else if (u.peer_closed())
    d += " whose peer was closed";
  else if (u.peer_ino())
    d += " connected to " + (peer.empty() ? "socket:[" + std::to_string(u.peer_ino()) + "]" : peer);
  return d;
}

const FdKindHandler* UnixSocketFdHandler() {
  static const UnixSocketHandler h;
  return &h;
}

}  // namespace cryo
