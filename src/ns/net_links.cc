// Links and addresses of a network namespace (rtnetlink(7): RTM_*LINK,
// RTM_*ADDR).
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>

#include "ns/net_objects.h"

namespace cryo::ns {

namespace {

// Flags the user sets on an address (ip-address(8)); the others are the
// kernel's (permanent, secondary, tentative, deprecated, dadfailed).
constexpr uint32_t kUserAddrFlags =
    IFA_F_NODAD | IFA_F_HOMEADDRESS | IFA_F_NOPREFIXROUTE | IFA_F_MANAGETEMPADDR | IFA_F_MCAUTOJOIN;

struct LinkInfo {
  std::string name, kind;
  unsigned flags = 0, type = 0;
  uint32_t mtu = 0;
};

LinkInfo ParseLink(const nlmsghdr* h) {
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h));
  auto attrs = ParseAttrs(h, sizeof(*ifi), IFLA_MAX);
  LinkInfo l;
  l.flags = ifi->ifi_flags;
  l.type = ifi->ifi_type;
  if (attrs[IFLA_IFNAME]) l.name = mnl_attr_get_str(attrs[IFLA_IFNAME]);
  if (attrs[IFLA_MTU]) l.mtu = mnl_attr_get_u32(attrs[IFLA_MTU]);
  if (const nlattr* info = attrs[IFLA_LINKINFO]) {
    for (const auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(info));
         mnl_attr_ok(a, static_cast<int>(static_cast<const char*>(mnl_attr_get_payload(info)) +
                                         mnl_attr_get_payload_len(info) - reinterpret_cast<const char*>(a)));
         a = mnl_attr_next(a))
      if (mnl_attr_get_type(a) == IFLA_INFO_KIND) l.kind = mnl_attr_get_str(a);
  }
  if (l.kind.empty() && l.type == ARPHRD_LOOPBACK) l.kind = "loopback";
  return l;
}

// RTM_NEWLINK of link `index`: up or down, and its MTU unless 0.
Status SetLink(Rtnl& nl, int index, bool up, uint32_t mtu, const std::string& what) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = RTM_NEWLINK;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  ifi->ifi_flags = up ? IFF_UP : 0;
  ifi->ifi_change = IFF_UP;
  if (mtu) mnl_attr_put_u32(h, IFLA_MTU, mtu);
  return nl.Request(h, what);
}

}  // namespace

Status ReadFreshLinks(Rtnl& nl, std::map<std::string, std::string>* out) {
  return nl.Dump(RTM_GETLINK, AF_UNSPEC, sizeof(ifinfomsg), [&](const nlmsghdr* h) {
    const LinkInfo l = ParseLink(h);
    (*out)[l.name] = l.kind;
    return Status::Ok();
  }, "the links of a fresh network namespace");
}

Status DumpLinks(Rtnl& nl, const FreshNetDefaults& fresh, int home_fd, image::NetNamespace* out) {
  // Answers of a dump are read before another request goes on the socket.
  std::vector<std::string> veths;
  CRYO_RETURN_IF_ERROR(nl.Dump(RTM_GETLINK, AF_UNSPEC, sizeof(ifinfomsg), [&](const nlmsghdr* h) -> Status {
    const LinkInfo l = ParseLink(h);
    const std::string what = "link " + l.name + " (" + (l.kind.empty() ? "of no kind" : "kind " + l.kind) + ")";
    if (l.kind == "loopback" || l.kind == "veth") {
      image::NetLink* link = out->add_links();
      link->set_name(l.name);
      link->set_flags(l.flags & IFF_UP);
      link->set_mtu(l.mtu);
      if (l.kind == "veth") veths.emplace_back(reinterpret_cast<const char*>(h), h->nlmsg_len);
      return Status::Ok();
    }
    auto it = fresh.links.find(l.name);
    if (it != fresh.links.end() && it->second == l.kind) {
      // A fallback device every namespace gets while its module is loaded
      // (ipip's tunl0, sit0, ...): made again by the fresh namespace.
      if (l.flags & IFF_UP)
        return Status::Error(what + " is up: a fallback tunnel device's configuration is not restored");
      return Status::Ok();
    }
    return Status::Error(what + ": links other than lo and veth pairs are not restored yet (move it out of the "
                         "namespace or delete it before the dump)");
  }, "the links of the tree's network namespace"));
  for (const std::string& msg : veths) {
    const auto* h = reinterpret_cast<const nlmsghdr*>(msg.data());
    const std::string name = ParseLink(h).name;
    for (image::NetLink& link : *out->mutable_links())
      if (link.name() == name) CRYO_RETURN_IF_ERROR(DumpVeth(nl, h, home_fd, &link));
  }
  return Status::Ok();
}

Status DumpAddresses(Rtnl& nl, image::NetNamespace* out) {
  std::set<std::string> recorded;
  for (const image::NetLink& l : out->links()) recorded.insert(l.name());
  return nl.Dump(RTM_GETADDR, AF_UNSPEC, sizeof(ifaddrmsg), [&](const nlmsghdr* h) -> Status {
    const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(h));
    auto attrs = ParseAttrs(h, sizeof(*ifa), IFA_MAX);
    CRYO_ASSIGN_OR_RETURN(std::string link, LinkName(static_cast<int>(ifa->ifa_index)));
    const int family = ifa->ifa_family;
    const std::string address = AttrBytes(attrs[IFA_ADDRESS]);
    const std::string local = attrs[IFA_LOCAL] ? AttrBytes(attrs[IFA_LOCAL]) : address;
    const std::string what = "address " + AddrText(family, local) + "/" + std::to_string(ifa->ifa_prefixlen) +
                             " on link " + link;
    if (family != AF_INET && family != AF_INET6) return Status::Error(what + " of address family " +
                                                                     std::to_string(family) + " is not restored");
    if (!recorded.count(link)) return Status::Error(what + ": the link's addresses are not restored");
    const uint32_t flags = attrs[IFA_FLAGS] ? mnl_attr_get_u32(attrs[IFA_FLAGS]) : ifa->ifa_flags;
    if (!(flags & IFA_F_PERMANENT))
      return Status::Error(what + " has a finite lifetime (autoconfigured or valid_lft set), which is not restored");
    image::NetAddress* a = out->add_addresses();
    a->set_link(link);
    a->set_family(static_cast<uint32_t>(family));
    a->set_local(local);
    if (address != local) a->set_peer(address);
    a->set_prefix_len(ifa->ifa_prefixlen);
    a->set_flags(flags & kUserAddrFlags);
    a->set_scope(ifa->ifa_scope);
    a->set_broadcast(AttrBytes(attrs[IFA_BROADCAST]));
    if (attrs[IFA_LABEL]) a->set_label(mnl_attr_get_str(attrs[IFA_LABEL]));
    return Status::Ok();
  }, "the addresses of the tree's network namespace");
}

Status RestoreLinks(Rtnl& nl, const image::NetNamespace& net, const VethPeerNamespaces* peers) {
  int serial = 0;
  for (const image::NetLink& l : net.links())
    if (l.has_veth()) CRYO_RETURN_IF_ERROR(CreateVeth(nl, l, peers, serial++));
  for (const image::NetLink& l : net.links()) {
    CRYO_ASSIGN_OR_RETURN(const int index, LinkIndex(l.name()));
    CRYO_RETURN_IF_ERROR(SetLink(nl, index, l.flags() & IFF_UP, l.mtu(),
                                 "setting link " + l.name() + (l.flags() & IFF_UP ? " up" : " down")));
  }
  return Status::Ok();
}

Status TakeLinksDown(Rtnl& nl) {
  std::vector<std::pair<int, std::string>> up;
  CRYO_RETURN_IF_ERROR(nl.Dump(RTM_GETLINK, AF_UNSPEC, sizeof(ifinfomsg), [&](const nlmsghdr* h) {
    const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h));
    const LinkInfo l = ParseLink(h);
    if ((l.flags & IFF_UP) && l.kind != "loopback") up.emplace_back(ifi->ifi_index, l.name);
    return Status::Ok();
  }, "the links of the tree's network namespace"));
  for (const auto& [index, name] : up)
    CRYO_RETURN_IF_ERROR(SetLink(nl, index, false, 0, "setting link " + name + " of the tree's network namespace down"));
  return Status::Ok();
}

namespace {

Status AddressRequest(Rtnl& nl, uint16_t type, int index, const image::NetAddress& a, const std::string& what) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = type;
  if (type == RTM_NEWADDR) h->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<uint8_t>(a.family());
  ifa->ifa_prefixlen = static_cast<uint8_t>(a.prefix_len());
  ifa->ifa_scope = static_cast<uint8_t>(a.scope());
  ifa->ifa_index = static_cast<uint32_t>(index);
  ifa->ifa_flags = static_cast<uint8_t>(a.flags());
  mnl_attr_put(h, IFA_LOCAL, a.local().size(), a.local().data());
  const std::string& address = a.peer().empty() ? a.local() : a.peer();
  mnl_attr_put(h, IFA_ADDRESS, address.size(), address.data());
  if (type == RTM_NEWADDR) {
    mnl_attr_put_u32(h, IFA_FLAGS, a.flags());
    if (!a.broadcast().empty()) mnl_attr_put(h, IFA_BROADCAST, a.broadcast().size(), a.broadcast().data());
    if (!a.label().empty()) mnl_attr_put_strz(h, IFA_LABEL, a.label().c_str());
  }
  return nl.Request(h, what);
}

}  // namespace

// Once the links are up: their addresses are exactly the image's, in its
// order (the first of a subnet is the primary, the others secondaries), so
// those the kernel added (lo's 127.0.0.1 and ::1) go first and come back.
Status RestoreAddresses(Rtnl& nl, const image::NetNamespace& net) {
  std::vector<std::pair<int, image::NetAddress>> present;
  CRYO_RETURN_IF_ERROR(nl.Dump(RTM_GETADDR, AF_UNSPEC, sizeof(ifaddrmsg), [&](const nlmsghdr* h) {
    const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(h));
    auto attrs = ParseAttrs(h, sizeof(*ifa), IFA_MAX);
    image::NetAddress a;
    a.set_family(ifa->ifa_family);
    a.set_prefix_len(ifa->ifa_prefixlen);
    a.set_local(AttrBytes(attrs[IFA_LOCAL] ? attrs[IFA_LOCAL] : attrs[IFA_ADDRESS]));
    if (attrs[IFA_LOCAL] && attrs[IFA_ADDRESS]) a.set_peer(AttrBytes(attrs[IFA_ADDRESS]));
    present.emplace_back(static_cast<int>(ifa->ifa_index), std::move(a));
    return Status::Ok();
  }, "the addresses of the fresh network namespace"));
  for (auto it = present.rbegin(); it != present.rend(); ++it) {
    Status s = AddressRequest(nl, RTM_DELADDR, it->first, it->second, "removing an address the kernel added");
    // Deleting a primary IPv4 address deletes its secondaries (ip-address(8)).
    if (!s.ok() && s.err() != EADDRNOTAVAIL && s.err() != ENOENT) return s;
  }
  // The kernel lists an interface's IPv4 addresses oldest first, IPv6 ones
  // newest first (net/ipv6/addrconf.c ipv6_link_dev_addr): IPv6 is added
  // from the end to keep its order.
  std::vector<const image::NetAddress*> order;
  for (const image::NetAddress& a : net.addresses())
    if (a.family() != AF_INET6) order.push_back(&a);
  for (auto it = net.addresses().rbegin(); it != net.addresses().rend(); ++it)
    if (it->family() == AF_INET6) order.push_back(&*it);
  for (const image::NetAddress* ap : order) {
    const image::NetAddress& a = *ap;
    CRYO_ASSIGN_OR_RETURN(const int index, LinkIndex(a.link()));
    const std::string what = "adding address " + AddrText(static_cast<int>(a.family()), a.local()) + "/" +
                             std::to_string(a.prefix_len()) + " to link " + a.link();
    CRYO_RETURN_IF_ERROR(AddressRequest(nl, RTM_NEWADDR, index, a, what));
  }
  return Status::Ok();
}

}  // namespace cryo::ns
