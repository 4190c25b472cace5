#include "net/sock_diag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "base/unique_fd.h"

namespace cryo {

namespace {

// One NETLINK_SOCK_DIAG socket per thread, kept between exchanges (a dump
// asks about thousands of sockets; opening a netlink socket for each was a
// good part of its cost). A socket goes back to the thread's spare only after
// an exchange that ended cleanly (the one answer of an exact query, or a
// dump's NLMSG_DONE or error): whatever is left unread of an exchange
// abandoned half-way would otherwise be taken for the next one's answer.
// A child forked since (a restore helper) does not share its parent's: it
// would read answers meant for the parent.
thread_local UniqueFd spare;
thread_local pid_t spare_pid = 0;
std::atomic<uint64_t> sockets_opened{0}, exchanges{0};

class DiagSocket {
 public:
  DiagSocket() {
    if (spare.valid() && spare_pid == ::getpid()) fd_ = std::move(spare);
    spare.reset();
    if (!fd_.valid()) {
      fd_.reset(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
      sockets_opened.fetch_add(1, std::memory_order_relaxed);
    }
    exchanges.fetch_add(1, std::memory_order_relaxed);
  }
  ~DiagSocket() {
    if (!clean_ || !fd_.valid()) return;
    spare = std::move(fd_);
    spare_pid = ::getpid();
  }
  DiagSocket(const DiagSocket&) = delete;
  DiagSocket& operator=(const DiagSocket&) = delete;
  int get() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  void Clean() { clean_ = true; }

 private:
  UniqueFd fd_;
  bool clean_ = false;
};

// Sends `request` (`len` bytes) on `nl`.
Status SendRequest(const DiagSocket& nl, const void* request, size_t len, const std::string& what) {
  if (!nl.valid()) return Status::FromErrno("socket(NETLINK_SOCK_DIAG)");
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), request, len, 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != static_cast<ssize_t>(len))
    return Status::FromErrno("sending " + what);
  return Status::Ok();
}

// The next answer on `nl` into *answer (its size is the room given); its
// length. Bounded: 1 s.
Result<size_t> ReceiveAnswer(const DiagSocket& nl, std::vector<char>* answer, const std::string& what) {
  pollfd p = {nl.get(), POLLIN, 0};
  const int ready = ::poll(&p, 1, 1000);
  if (ready < 0) return Status::FromErrno("waiting for " + what);
  if (ready == 0) return Status::Error(what + ": no answer within 1 s");
  const ssize_t n = ::recv(nl.get(), answer->data(), answer->size(), 0);
  if (n < 0) return Status::FromErrno("receiving " + what);
  return static_cast<size_t>(n);
}

}  // namespace

uint64_t SockDiagSocketsOpened() { return sockets_opened.load(); }
uint64_t SockDiagExchanges() { return exchanges.load(); }

Status SockDiagDump(const void* req, size_t len, const std::string& what,
                    const std::function<bool(const nlmsghdr*)>& each) {
  DiagSocket nl;
  CRYO_RETURN_IF_ERROR(SendRequest(nl, req, len, what));
  // Room for one batch of answers (the kernel fills up to a page or so per
  // recv; 64 KiB takes any). Not zeroed per call: kept per thread.
  thread_local std::vector<char> buf(64 * 1024);
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(const size_t got, ReceiveAnswer(nl, &buf, what));
    ssize_t n = static_cast<ssize_t>(got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        nl.Clean();
        return Status::Ok();
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        nl.Clean();
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        return Status::Errno(-e->error, what);
      }
      if (each(h)) return Status::Ok();  // the rest unread: that socket is not reused
    }
  }
}

Result<size_t> SockDiagQuery(const void* request, size_t len, std::vector<char>* answer, const std::string& what) {
  DiagSocket nl;
  CRYO_RETURN_IF_ERROR(SendRequest(nl, request, len, what));
  CRYO_ASSIGN_OR_RETURN(const size_t got, ReceiveAnswer(nl, answer, what));
  // An exact query has one answer (the socket's record or an error), unless
  // it did not fit in *answer (MSG_TRUNC would have dropped the rest).
  if (got < answer->size()) nl.Clean();
  return got;
}

namespace {

// The sockets of `family` and `protocol` (one inet_diag dump of every state)
// passed to `each` by inode, with what InetSocketDiag holds, until it
// returns true.
Status DumpInetSockets(int family, int protocol, const std::string& what,
                       const std::function<bool(uint64_t ino, const InetSocketDiag&)>& each) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = static_cast<uint8_t>(protocol);
  msg.req.idiag_states = ~0u;
  return SockDiagDump(&msg, sizeof(msg), what, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return false;
    const auto* d = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
    InetSocketDiag out;
    out.state = d->idiag_state;
    out.rqueue = d->idiag_rqueue;
    out.wqueue = d->idiag_wqueue;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
      if (a->rta_type == INET_DIAG_SHUTDOWN && RTA_PAYLOAD(a) >= 1) out.shutdown = *static_cast<const uint8_t*>(RTA_DATA(a));
    return each(d->idiag_inode, out);
  });
}

std::atomic<uint64_t> inet_dumps{0};

}  // namespace

Result<InetSocketDiag> QueryInetSocket(int family, int protocol, uint64_t ino) {
  const std::string what = "inet_diag of socket inode " + std::to_string(ino);
  bool found = false;
  InetSocketDiag out;
  inet_dumps.fetch_add(1, std::memory_order_relaxed);
  CRYO_RETURN_IF_ERROR(DumpInetSockets(family, protocol, what, [&](uint64_t i, const InetSocketDiag& d) {
    if (i != static_cast<uint32_t>(ino)) return false;
    found = true;
    out = d;
    return true;
  }));
  if (!found) return Status::Error(what + ": no answer for that socket (a socket of another network namespace?)");
  return out;
}

Result<InetSocketDiag> InetDiagSnapshot::Find(int family, int protocol, uint64_t ino) {
  {
    std::lock_guard<std::mutex> l(mu_);
    const auto key = std::make_pair(family, protocol);
    auto taken = by_kind_.find(key);
    if (taken == by_kind_.end()) {
      std::map<uint64_t, InetSocketDiag> all;
      inet_dumps.fetch_add(1, std::memory_order_relaxed);
      CRYO_RETURN_IF_ERROR(DumpInetSockets(family, protocol, "inet_diag dump of the sockets",
                                           [&](uint64_t i, const InetSocketDiag& d) {
                                             if (i) all[i] = d;
                                             return false;
                                           }));
      taken = by_kind_.emplace(key, std::move(all)).first;
    }
    if (auto it = taken->second.find(ino); it != taken->second.end()) return it->second;
  }
  return QueryInetSocket(family, protocol, ino);
}

uint64_t InetDiagDumps() { return inet_dumps.load(); }

Result<NetlinkSocketDiag> QueryNetlinkSocket(uint64_t ino) {
  const std::string what = "netlink_diag of socket inode " + std::to_string(ino);
  struct {
    nlmsghdr nlh;
    netlink_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_NETLINK;
  msg.req.sdiag_protocol = NDIAG_PROTO_ALL;
  msg.req.ndiag_show = NDIAG_SHOW_GROUPS | NDIAG_SHOW_MEMINFO | NDIAG_SHOW_FLAGS;
  bool found = false;
  NetlinkSocketDiag out;
  CRYO_RETURN_IF_ERROR(SockDiagDump(&msg, sizeof(msg), what, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return false;
    const auto* d = static_cast<const netlink_diag_msg*>(NLMSG_DATA(h));
    if (d->ndiag_ino != static_cast<uint32_t>(ino)) return false;
    found = true;
    out.protocol = d->ndiag_protocol;
    out.portid = d->ndiag_portid;
    out.dst_portid = d->ndiag_dst_portid;
    out.dst_group = d->ndiag_dst_group;
    out.state = d->ndiag_state;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<const rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == NETLINK_DIAG_GROUPS) {
        const auto* g = static_cast<const uint32_t*>(RTA_DATA(a));
        out.groups.assign(g, g + RTA_PAYLOAD(a) / sizeof(uint32_t));
      } else if (a->rta_type == NETLINK_DIAG_MEMINFO && RTA_PAYLOAD(a) > SK_MEMINFO_RMEM_ALLOC * sizeof(uint32_t)) {
        out.rmem = static_cast<const uint32_t*>(RTA_DATA(a))[SK_MEMINFO_RMEM_ALLOC];
      } else if (a->rta_type == NETLINK_DIAG_FLAGS && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
        out.flags = *static_cast<const uint32_t*>(RTA_DATA(a));
      }
    }
    return true;
  }));
  if (!found) return Status::Error(what + ": no answer for that socket (a socket of another network namespace?)");
  return out;
}

}  // namespace cryo
