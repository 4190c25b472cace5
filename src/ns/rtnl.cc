#include "ns/rtnl.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <poll.h>

#include <cerrno>

namespace cryo::ns {

Rtnl::Rtnl(mnl_socket* nl) : nl_(nl) {}

Rtnl::~Rtnl() {
  if (nl_) mnl_socket_close(nl_);
}

Result<Rtnl> Rtnl::Open(int protocol) {
  mnl_socket* nl = mnl_socket_open2(protocol, SOCK_CLOEXEC);
  if (!nl) return Status::FromErrno("netlink socket (protocol " + std::to_string(protocol) + ")");
  Rtnl r(nl);
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) return Status::FromErrno("bind of a netlink socket");
  r.portid_ = mnl_socket_get_portid(nl);
  return r;
}

namespace {

struct Walk {
  const std::function<Status(const nlmsghdr*)>* each;
  Status status = Status::Ok();
};

int OnMessage(const nlmsghdr* h, void* data) {
  auto* w = static_cast<Walk*>(data);
  w->status = (*w->each)(h);
  return w->status.ok() ? MNL_CB_OK : MNL_CB_ERROR;
}

// Answers until the end of the exchange (NLMSG_DONE, or the ack of a
// request); bounded: 5 s without an answer is an error.
Status Receive(mnl_socket* nl, uint32_t seq, uint32_t portid, const std::function<Status(const nlmsghdr*)>& each,
               const std::string& what) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  Walk w{&each};
  for (;;) {
    pollfd p = {mnl_socket_get_fd(nl), POLLIN, 0};
    const int ready = ::poll(&p, 1, 5000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Status::FromErrno("waiting for " + what);
    if (ready == 0) return Status::Error(what + ": no answer within 5 s");
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) return Status::FromErrno("receiving " + what);
    errno = 0;
    const int r = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, portid, OnMessage, &w);
    if (r == MNL_CB_STOP) return Status::Ok();
    if (r == MNL_CB_ERROR) {
      if (!w.status.ok()) return w.status;
      return Status::FromErrno(what);  // an NLMSG_ERROR answer: mnl_cb_run set errno
    }
  }
}

}  // namespace

Status Rtnl::Dump(uint16_t type, uint8_t family, size_t hdr_len, const std::function<Status(const nlmsghdr*)>& each,
                  const std::string& what) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  h->nlmsg_seq = ++seq_;
  if (hdr_len) {
    auto* hdr = static_cast<uint8_t*>(mnl_nlmsg_put_extra_header(h, hdr_len));
    hdr[0] = family;
  }
  if (mnl_socket_sendto(nl_, h, h->nlmsg_len) < 0) return Status::FromErrno("sending " + what);
  return Receive(nl_, seq_, portid_, each, what);
}

Status Rtnl::Request(nlmsghdr* msg, const std::string& what) {
  return Get(msg, [](const nlmsghdr*) { return Status::Ok(); }, what);
}

Status Rtnl::Get(nlmsghdr* msg, const std::function<Status(const nlmsghdr*)>& each, const std::string& what) {
  msg->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  msg->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(nl_, msg, msg->nlmsg_len) < 0) return Status::FromErrno("sending " + what);
  return Receive(nl_, seq_, portid_, each, what);
}

std::vector<const nlattr*> ParseAttrs(const nlmsghdr* h, size_t hdr_len, uint16_t max_type) {
  std::vector<const nlattr*> out(max_type + 1, nullptr);
  auto* msg = const_cast<nlmsghdr*>(h);
  for (auto* a = static_cast<nlattr*>(mnl_nlmsg_get_payload_offset(msg, hdr_len));
       mnl_attr_ok(a, static_cast<int>(static_cast<char*>(mnl_nlmsg_get_payload_tail(msg)) - reinterpret_cast<char*>(a)));
       a = mnl_attr_next(a)) {
    const uint16_t t = mnl_attr_get_type(a);
    if (t <= max_type) out[t] = a;
  }
  return out;
}

std::string AttrBytes(const nlattr* a) {
  if (!a) return {};
  return std::string(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
}

std::string AddrText(int family, const std::string& bytes) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (bytes.size() == (family == AF_INET ? 4u : 16u)) ::inet_ntop(family, bytes.data(), text, sizeof(text));
  return text;
}

Result<std::string> LinkName(int index) {
  char name[IF_NAMESIZE] = {};
  if (!::if_indextoname(static_cast<unsigned>(index), name))
    return Status::FromErrno("the name of interface " + std::to_string(index));
  return std::string(name);
}

Result<int> LinkIndex(const std::string& name) {
  const unsigned i = ::if_nametoindex(name.c_str());
  if (!i) return Status::FromErrno("interface " + name);
  return static_cast<int>(i);
}

}  // namespace cryo::ns
