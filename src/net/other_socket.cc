// Every socket no other handler takes (asked last): refused by name, with
// what it is (family, type, protocol, state, local and peer address, as
// socket_names.h tells) and what the user can do. ICMP ("ping"), raw and
// packet sockets, UDP-Lite, MPTCP, netlink sockets of other protocols, and
// any family cryo does not know.
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "net/socket_names.h"
#include "net/socket_options.h"

namespace cryo {

namespace {

// Why a socket of this kind is not restored.
std::string Why(int family, int type, int protocol) {
  if (family == AF_INET || family == AF_INET6) {
    if (protocol == IPPROTO_MPTCP)
      return "MPTCP (multipath TCP) sockets are not restored; a Go program (Go 1.24 and newer use MPTCP by default) "
             "falls back to plain TCP, which cryo restores, when run with GODEBUG=multipathtcp=0";
    if (protocol == IPPROTO_UDPLITE) return "UDP-Lite sockets are not restored";
    if (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6))
      return "ICMP echo (\"ping\") sockets are not restored";
    if (type == SOCK_RAW) return "raw sockets are not restored";
    if (protocol == IPPROTO_SCTP) return "SCTP sockets are not restored";
    return "sockets of this protocol are not restored";
  }
  if (family == AF_NETLINK)
    return "netlink sockets of this protocol are not restored (only route, generic, sock_diag and kobject_uevent)";
  if (family == AF_PACKET) return "packet sockets are not restored";
  return "sockets of this family are not restored";
}

class OtherSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_UNKNOWN; }
  const char* name() const override { return "socket"; }
  bool Handles(const FdSource& s) const override { return S_ISSOCK(s.st.st_mode); }
  Status Dump(const FdSource& s, image::Fd*) const override {
    const int fd = s.Dup();
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    const FdSource::SocketKind& k = s.Socket();
    return Status::Error(DescribeSocket(fd) + ": " + Why(k.family, k.type, k.protocol));
  }
  Result<int> Open(const image::Fd&) const override { return Status::Error("internal: a refused socket in an image"); }
};

}  // namespace

const FdKindHandler* OtherSocketFdHandler() {
  static const OtherSocketHandler h;
  return &h;
}

}  // namespace cryo
