#include "net/unix_diag.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <cstring>

#include "net/sock_diag.h"

namespace cryo {

Result<UnixSocketDiag> QueryUnixSocket(uint64_t ino) {
  const std::string what = "UNIX_DIAG of socket inode " + std::to_string(ino);
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // one socket (unix_diag_get_exact), not a dump
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE
  // Room for the accept queue of a listener with a large backlog (4 bytes a connection).
  // Not zeroed per query: kept per thread (a dump asks about every socket).
  thread_local std::vector<char> space(1 << 20);
  CRYO_ASSIGN_OR_RETURN(const size_t got, SockDiagQuery(&msg, sizeof(msg), &space, what));
  char* buf = space.data();
  ssize_t n = static_cast<ssize_t>(got);
  for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      const auto* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
      return Status::Errno(-e->error, what + " (a socket of another network namespace?)");
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    const auto* d = static_cast<const struct unix_diag_msg*>(NLMSG_DATA(h));
    if (d->udiag_ino != static_cast<uint32_t>(ino)) continue;
    UnixSocketDiag out;
    out.state = d->udiag_state;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const struct rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == UNIX_DIAG_VFS && RTA_PAYLOAD(a) >= sizeof(struct unix_diag_vfs)) {
        const auto* v = static_cast<const struct unix_diag_vfs*>(RTA_DATA(a));
        // The file system's s_dev, a kernel dev_t (20 bits of minor).
        out.has_file = true;
        out.file_dev = makedev(v->udiag_vfs_dev >> 20, v->udiag_vfs_dev & 0xfffff);
        out.file_ino = v->udiag_vfs_ino;
      } else if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(struct unix_diag_rqlen)) {
        const auto* q = static_cast<const struct unix_diag_rqlen*>(RTA_DATA(a));
        out.queued = q->udiag_rqueue;
        out.backlog = q->udiag_wqueue;
      } else if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
        out.peer_ino = *static_cast<const uint32_t*>(RTA_DATA(a));
      } else if (a->rta_type == UNIX_DIAG_ICONS) {
        const auto* icons = static_cast<const uint32_t*>(RTA_DATA(a));
        out.pending_clients.assign(icons, icons + RTA_PAYLOAD(a) / sizeof(uint32_t));
      } else if (a->rta_type == UNIX_DIAG_SHUTDOWN && RTA_PAYLOAD(a) >= sizeof(uint8_t)) {
        out.shutdown = *static_cast<const uint8_t*>(RTA_DATA(a));
      }
    }
    return out;
  }
  return Status::Error(what + ": no answer for that socket");
}

}  // namespace cryo
