// Netlink sockets of the protocols a program uses to ask the kernel and to
// listen to it (route, generic, sock_diag, kobject_uevent): the dump records
// the port id (bound or autobound), the multicast groups it listens to and
// its peer (netlink_diag), the SOL_NETLINK flags that are set and the
// SOL_SOCKET options that differ from a new socket's; the restore makes the
// socket in cryo, binds it to the same port id, joins the groups and
// connects it. What waits to be read (answers, notifications) cannot be
// made again faithfully, so a socket with anything queued, or with a dump
// running on it, is refused by name, as is every other netlink protocol.
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "net/sock_diag.h"
#include "net/socket_names.h"
#include "net/socket_options.h"

namespace cryo {

namespace {

// SOL_NETLINK flags a program sets with an int (netlink(7)).
struct NetlinkFlag {
  int name;
  const char* label;
};
constexpr NetlinkFlag kFlags[] = {
    {NETLINK_PKTINFO, "NETLINK_PKTINFO"},         {NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"},
    {NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS"},   {NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"},
    {NETLINK_CAP_ACK, "NETLINK_CAP_ACK"},         {NETLINK_EXT_ACK, "NETLINK_EXT_ACK"},
    {NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"},
};

bool Restorable(int protocol) {
  return protocol == NETLINK_ROUTE || protocol == NETLINK_GENERIC || protocol == NETLINK_SOCK_DIAG ||
         protocol == NETLINK_KOBJECT_UEVENT;
}

// The target's netlink socket in cryo (FdSource::Dup, borrowed) of a
// protocol cryo restores; -1 otherwise.
int GrabNetlink(const FdSource& s) {
  if (!S_ISSOCK(s.st.st_mode)) return -1;
  const FdSource::SocketKind& k = s.Socket();
  if (k.family != AF_NETLINK) return -1;
  if (!Restorable(k.protocol)) return -1;  // other_socket.cc refuses it
  return s.Dup();
}

std::string Describe(const image::NetlinkSocket& n) {
  std::string s = "netlink " + NetlinkProtocolName(n.protocol()) + " socket portid " + std::to_string(n.portid());
  if (!n.groups().empty()) {
    s += " groups";
    for (uint32_t g : n.groups()) s += " " + std::to_string(g);
  }
  if (n.connected()) s += " <-> portid " + std::to_string(n.dst_portid()) + " group " + std::to_string(n.dst_group());
  return s;
}

Status DumpNetlink(const FdSource& s, int fd, image::NetlinkSocket* n) {
  n->set_type(IntSocketOption(fd, SOL_SOCKET, SO_TYPE));
  n->set_protocol(IntSocketOption(fd, SOL_SOCKET, SO_PROTOCOL));
  n->set_ino(s.st.st_ino);
  // A socket not bound yet (no request sent, no bind) is in no table
  // netlink_diag walks, and can have nothing queued: no port id reaches it.
  sockaddr_nl self{};
  socklen_t len = sizeof(self);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) != 0) return Status::FromErrno("getsockname of " + s.what());
  NetlinkSocketDiag diag;
  if (self.nl_pid != 0) {
    CRYO_ASSIGN_OR_RETURN(diag, QueryNetlinkSocket(s.st.st_ino));
  }
  n->set_portid(diag.portid);
  for (size_t word = 0; word < diag.groups.size(); ++word)
    for (uint32_t bit = 0; bit < 32; ++bit)
      if (diag.groups[word] & (1u << bit)) n->add_groups(static_cast<uint32_t>(word * 32 + bit + 1));
  n->set_connected(diag.state == 1 /*NETLINK_CONNECTED*/);
  n->set_dst_portid(diag.dst_portid);
  n->set_dst_group(diag.dst_group);
  const std::string what = Describe(*n);
  if (diag.rmem)
    return Status::Error(what + ": " + std::to_string(diag.rmem) +
                         " bytes of messages wait to be read on it (answers or notifications from the kernel), which "
                         "cannot be restored faithfully: checkpoint it when it has read them");
  if (diag.flags & NDIAG_FLAG_CB_RUNNING)
    return Status::Error(what + ": a dump request is running on it (more answers to come), which cryo cannot restore");
  for (const NetlinkFlag& f : kFlags) {
    const int v = IntSocketOption(fd, SOL_NETLINK, f.name);
    if (v <= 0) continue;
    image::SocketOption* o = n->add_netlink_options();
    o->set_level(SOL_NETLINK);
    o->set_name(f.name);
    o->set_value(std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
  }
  n->set_owner_uid(s.st.st_uid);
  n->set_owner_gid(s.st.st_gid);
  return DumpSocketOptions(fd, AF_NETLINK, n->type(), n->protocol(), what, n->mutable_options());
}

class NetlinkSocketHandler final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_NETLINK_SOCKET; }
  const char* name() const override { return "netlink socket"; }
  const char* feature() const override { return "netlink-sockets"; }
  bool Handles(const FdSource& s) const override { return GrabNetlink(s) >= 0; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    const int fd = GrabNetlink(s);  // borrowed (FdSource::Dup)
    if (fd < 0) return Status::FromErrno("pidfd_getfd of " + s.what());
    return DumpNetlink(s, fd, out->mutable_netlink_socket());
  }
  Result<int> Open(const image::Fd& f) const override {
    const image::NetlinkSocket& n = f.netlink_socket();
    const std::string what = Describe(n);
    UniqueFd fd(::socket(AF_NETLINK, n.type() | SOCK_CLOEXEC, n.protocol()));
    if (!fd.valid()) return Status::FromErrno("socket for " + what);
    CRYO_RETURN_IF_ERROR(RestoreSocketOptions(fd.get(), n.options(), what));
    for (const image::SocketOption& o : n.netlink_options())
      if (::setsockopt(fd.get(), SOL_NETLINK, o.name(), o.value().data(), static_cast<socklen_t>(o.value().size())) != 0)
        return Status::FromErrno("setting netlink option " + std::to_string(o.name()) + " on " + what);
    if (n.portid() != 0) {
      sockaddr_nl sa{};
      sa.nl_family = AF_NETLINK;
      sa.nl_pid = n.portid();
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        if (errno == EADDRINUSE)
          return Status::FromErrno("bind of " + what + ": another netlink socket holds this port id (the original "
                                   "process still runs?)");
        return Status::FromErrno("bind of " + what);
      }
    }
    for (uint32_t g : n.groups()) {
      const int group = static_cast<int>(g);
      if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0)
        return Status::FromErrno("joining group " + std::to_string(g) + " for " + what);
    }
    if (n.connected()) {
      sockaddr_nl sa{};
      sa.nl_family = AF_NETLINK;
      sa.nl_pid = n.dst_portid();
      sa.nl_groups = n.dst_group() ? 1u << (n.dst_group() - 1) : 0;
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
        return Status::FromErrno("connect of " + what);
    }
    CRYO_RETURN_IF_ERROR(SetSocketOwnerAndFlags(fd.get(), n.owner_uid(), n.owner_gid(), f.flags(), what));
    return fd.release();
  }
};

}  // namespace

const FdKindHandler* NetlinkSocketFdHandler() {
  static const NetlinkSocketHandler h;
  return &h;
}

}  // namespace cryo
