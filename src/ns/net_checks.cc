// What a network namespace may hold that cryo does not restore, refused by
// name: tc qdiscs beyond a device's default (tc(8)), IPsec states and
// policies (NETLINK_XFRM, ip-xfrm(8)), iptables-legacy tables.
#include <libmnl/libmnl.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/xfrm.h>
#include <sys/socket.h>

#include <cerrno>

#include "base/file_util.h"
#include "ns/net_objects.h"

namespace cryo::ns {

Status CheckTrafficControl(Rtnl& nl) {
  return nl.Dump(RTM_GETQDISC, AF_UNSPEC, sizeof(tcmsg), [&](const nlmsghdr* h) -> Status {
    const auto* tc = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(h));
    auto attrs = ParseAttrs(h, sizeof(*tc), TCA_MAX);
    const std::string kind = attrs[TCA_KIND] ? mnl_attr_get_str(attrs[TCA_KIND]) : "";
    // What a device gets by itself (net/sched/sch_generic.c
    // dev_activate): noop while down, noqueue for lo and veth, handle 0.
    if (tc->tcm_parent == TC_H_ROOT && tc->tcm_handle == 0 && (kind == "noop" || kind == "noqueue"))
      return Status::Ok();
    auto link = LinkName(tc->tcm_ifindex);
    return Status::Error("the tree's network namespace has a tc qdisc " + kind + " on link " +
                         (link.ok() ? *link : std::to_string(tc->tcm_ifindex)) + ", which is not restored");
  }, "the qdiscs of the tree's network namespace");
}

Status CheckXfrm() {
  auto xfrm = Rtnl::Open(NETLINK_XFRM);
  // Without the xfrm_user module there is no IPsec state to speak of.
  if (!xfrm.ok()) return xfrm.status().err() == EPROTONOSUPPORT ? Status::Ok() : xfrm.status();
  for (auto [type, what] : {std::pair{XFRM_MSG_GETSA, "IPsec security associations (ip xfrm state)"},
                            std::pair{XFRM_MSG_GETPOLICY, "IPsec policies (ip xfrm policy)"}}) {
    const std::string w = what;
    CRYO_RETURN_IF_ERROR(xfrm->Dump(type, 0, 0, [&](const nlmsghdr*) {
      return Status::Error("the tree's network namespace has " + w + ", which are not restored");
    }, w));
  }
  return Status::Ok();
}

Status ReadXtTables(std::map<std::string, std::string>* out) {
  // /proc/thread-self/net: the thread's namespace (/proc/self/net is the
  // main thread's, proc_net.c get_proc_task_net).
  for (const char* name : {"ip_tables_names", "ip6_tables_names", "arp_tables_names"}) {
    auto text = ReadFileToString(std::string("/proc/thread-self/net/") + name);
    (*out)[name] = text.ok() ? *text : "";
  }
  return Status::Ok();
}

}  // namespace cryo::ns
