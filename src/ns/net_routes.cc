// Routes, policy routing rules, nexthop objects and neighbour entries of a
// network namespace (rtnetlink(7): RTM_*ROUTE, RTM_GETRULE, RTM_GETNEXTHOP,
// RTM_GETNEIGH).
#include <libmnl/libmnl.h>
#include <linux/neighbour.h>
#include <linux/nexthop.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>

#include "ns/net_objects.h"

namespace cryo::ns {

namespace {

std::string RouteText(const image::NetRoute& r) {
  const int f = static_cast<int>(r.family());
  std::string t = r.dst().empty() ? std::string("default") : AddrText(f, r.dst()) + "/" + std::to_string(r.dst_len());
  if (!r.gateway().empty()) t += " via " + AddrText(f, r.gateway());
  if (!r.link().empty()) t += " dev " + r.link();
  return t;
}

// The attributes a route of the main table may have for cryo to restore it.
Status CheckRouteAttrs(const std::vector<const nlattr*>& attrs, const std::string& what) {
  struct Refused {
    int type;
    const char* name;
  };
  static constexpr Refused kRefused[] = {
      {RTA_MULTIPATH, "several nexthops (multipath)"}, {RTA_ENCAP, "an encapsulation (lwtunnel)"},
      {RTA_NH_ID, "a nexthop object"},                  {RTA_EXPIRES, "an expiry time"},
      {RTA_VIA, "a gateway of another family (via)"},   {RTA_MARK, "a firewall mark"},
      {RTA_UID, "a uid range"},                         {RTA_IIF, "an input interface"},
      {RTA_SRC, "a source prefix (from)"},
  };
  for (const Refused& r : kRefused)
    if (attrs[r.type]) return Status::Error(what + " has " + r.name + ", which is not restored");
  if (const nlattr* m = attrs[RTA_METRICS]; m && mnl_attr_get_payload_len(m) > 0)
    return Status::Error(what + " has metrics (mtu, window, rtt, ...), which are not restored");
  return Status::Ok();
}

}  // namespace

Status DumpRoutes(Rtnl& nl, const FreshNetDefaults& fresh, image::NetNamespace* out) {
  CRYO_RETURN_IF_ERROR(nl.Dump(RTM_GETROUTE, AF_UNSPEC, sizeof(rtmsg), [&](const nlmsghdr* h) -> Status {
    const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(h));
    auto attrs = ParseAttrs(h, sizeof(*rtm), RTA_MAX);
    image::NetRoute r;
    r.set_family(rtm->rtm_family);
    r.set_dst(AttrBytes(attrs[RTA_DST]));
    r.set_dst_len(rtm->rtm_dst_len);
    r.set_gateway(AttrBytes(attrs[RTA_GATEWAY]));
    if (attrs[RTA_OIF]) {
      CRYO_ASSIGN_OR_RETURN(std::string link, LinkName(static_cast<int>(mnl_attr_get_u32(attrs[RTA_OIF]))));
      r.set_link(link);
    }
    if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6)
      return Status::Error("a route of family " + std::to_string(rtm->rtm_family) +
                           " (multicast routing or MPLS) is not restored");
    // Made by the kernel from an address or a link going up: made again.
    if (rtm->rtm_protocol == RTPROT_KERNEL) return Status::Ok();
    const uint32_t table = attrs[RTA_TABLE] ? mnl_attr_get_u32(attrs[RTA_TABLE]) : rtm->rtm_table;
    const std::string what = "route " + RouteText(r) + " (table " + std::to_string(table) + ", protocol " +
                             std::to_string(rtm->rtm_protocol) + ")";
    if (table != RT_TABLE_MAIN)
      return Status::Error(what + ": routes of tables other than main (policy routing) are not restored");
    CRYO_RETURN_IF_ERROR(CheckRouteAttrs(attrs, what));
    r.set_priority(attrs[RTA_PRIORITY] ? mnl_attr_get_u32(attrs[RTA_PRIORITY]) : 0);
    r.set_scope(rtm->rtm_scope);
    r.set_type(rtm->rtm_type);
    r.set_protocol(rtm->rtm_protocol);
    r.set_prefsrc(AttrBytes(attrs[RTA_PREFSRC]));
    r.set_tos(rtm->rtm_tos);
    *out->add_routes() = std::move(r);
    return Status::Ok();
  }, "the routes of the tree's network namespace"));
  std::set<std::string> rules;
  CRYO_RETURN_IF_ERROR(ReadRules(nl, &rules));
  for (const std::string& r : rules)
    if (!fresh.rules.count(r))
      return Status::Error("the tree's network namespace has a policy routing rule a fresh one has not (ip rule), "
                           "which is not restored");
  for (const std::string& r : fresh.rules)
    if (!rules.count(r))
      return Status::Error("the tree's network namespace lacks a default policy routing rule (ip rule), which is "
                           "not restored");
  Status nh = nl.Dump(RTM_GETNEXTHOP, AF_UNSPEC, sizeof(nhmsg), [&](const nlmsghdr*) {
    return Status::Error("the tree's network namespace has nexthop objects (ip nexthop), which are not restored");
  }, "the nexthop objects of the tree's network namespace");
  // EOPNOTSUPP/EINVAL: a kernel without nexthop objects.
  if (!nh.ok() && nh.err() != EOPNOTSUPP && nh.err() != EINVAL) return nh;
  return nl.Dump(RTM_GETNEIGH, AF_UNSPEC, sizeof(ndmsg), [&](const nlmsghdr* h) -> Status {
    const auto* nd = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(h));
    if (!(nd->ndm_state & NUD_PERMANENT)) return Status::Ok();  // learnt again
    auto attrs = ParseAttrs(h, sizeof(*nd), NDA_MAX);
    return Status::Error("the tree's network namespace has a permanent neighbour entry for " +
                         AddrText(nd->ndm_family, AttrBytes(attrs[NDA_DST])) + " (ip neigh), which is not restored");
  }, "the neighbour entries of the tree's network namespace");
}

Status ReadRules(Rtnl& nl, std::set<std::string>* out) {
  return nl.Dump(RTM_GETRULE, AF_UNSPEC, sizeof(rtmsg), [&](const nlmsghdr* h) {
    out->insert(std::string(static_cast<const char*>(mnl_nlmsg_get_payload(h)), mnl_nlmsg_get_payload_len(h)));
    return Status::Ok();
  }, "the policy routing rules");
}

namespace {

Status AddRoute(Rtnl& nl, const image::NetRoute& r) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = RTM_NEWROUTE;
  h->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(h, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(r.family());
  rtm->rtm_dst_len = static_cast<uint8_t>(r.dst_len());
  rtm->rtm_tos = static_cast<uint8_t>(r.tos());
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = static_cast<uint8_t>(r.protocol());
  rtm->rtm_scope = static_cast<uint8_t>(r.scope());
  rtm->rtm_type = static_cast<uint8_t>(r.type());
  if (!r.dst().empty()) mnl_attr_put(h, RTA_DST, r.dst().size(), r.dst().data());
  if (!r.gateway().empty()) mnl_attr_put(h, RTA_GATEWAY, r.gateway().size(), r.gateway().data());
  if (!r.prefsrc().empty()) mnl_attr_put(h, RTA_PREFSRC, r.prefsrc().size(), r.prefsrc().data());
  if (r.priority()) mnl_attr_put_u32(h, RTA_PRIORITY, r.priority());
  if (!r.link().empty()) {
    CRYO_ASSIGN_OR_RETURN(const int index, LinkIndex(r.link()));
    mnl_attr_put_u32(h, RTA_OIF, static_cast<uint32_t>(index));
  }
  return nl.Request(h, "adding route " + RouteText(r));
}

}  // namespace

// In rounds: a route whose gateway is reached through another route of the
// image waits for it (the kernel answers ENETUNREACH until then).
Status RestoreRoutes(Rtnl& nl, const image::NetNamespace& net) {
  std::vector<const image::NetRoute*> left;
  for (const image::NetRoute& r : net.routes()) left.push_back(&r);
  while (!left.empty()) {
    std::vector<const image::NetRoute*> later;
    Status first = Status::Ok();
    for (const image::NetRoute* r : left) {
      Status s = AddRoute(nl, *r);
      if (s.ok()) continue;
      if (s.err() != ENETUNREACH) return s;
      if (first.ok()) first = s;
      later.push_back(r);
    }
    if (later.size() == left.size()) return first;
    left = std::move(later);
  }
  return Status::Ok();
}

}  // namespace cryo::ns
