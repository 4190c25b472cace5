// A netlink socket of the calling thread's network namespace (libmnl): the
// dumps and requests cryo uses to read and rebuild a network namespace
// (rtnetlink(7), and NETLINK_XFRM for the refusal of IPsec state). A socket
// belongs to the namespace of the thread that created it (socket(2),
// network_namespaces(7)), whatever the thread does later.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

struct mnl_socket;

namespace cryo::ns {

class Rtnl {
 public:
  static Result<Rtnl> Open(int protocol = NETLINK_ROUTE);
  Rtnl(Rtnl&& o) noexcept : nl_(o.nl_), portid_(o.portid_), seq_(o.seq_) { o.nl_ = nullptr; }
  Rtnl(const Rtnl&) = delete;
  ~Rtnl();

  // A dump request of `type` (RTM_GETLINK, ...) whose header of `hdr_len`
  // bytes starts with the address family (every rtnetlink header does);
  // `each` sees every answer.
  Status Dump(uint16_t type, uint8_t family, size_t hdr_len, const std::function<Status(const nlmsghdr*)>& each,
              const std::string& what);
  // Sends the request in `msg` (NLM_F_REQUEST|NLM_F_ACK added) and waits for
  // its acknowledgement.
  Status Request(nlmsghdr* msg, const std::string& what);
  // A request whose answers (RTM_GETLINK of one link, RTM_GETNSID) `each`
  // sees before the acknowledgement.
  Status Get(nlmsghdr* msg, const std::function<Status(const nlmsghdr*)>& each, const std::string& what);

 private:
  explicit Rtnl(mnl_socket* nl);
  mnl_socket* nl_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 1;
};

// A message buffer for Rtnl::Request (libmnl's minimum socket buffer).
struct NlBuffer {
  alignas(nlmsghdr) char bytes[8192] = {};
};

// The attributes of a message (after its `hdr_len`-byte header), by type.
std::vector<const struct nlattr*> ParseAttrs(const nlmsghdr* h, size_t hdr_len, uint16_t max_type);
std::string AttrBytes(const struct nlattr* a);

// An address of `family` (AF_INET, AF_INET6) in network order, as text.
std::string AddrText(int family, const std::string& bytes);

// The name of interface `index` in the calling thread's namespace.
Result<std::string> LinkName(int index);
Result<int> LinkIndex(const std::string& name);

}  // namespace cryo::ns
