// The parts of a network namespace cryo dumps and rebuilds (ns/netns.h),
// each read with netlink from a thread inside the namespace (ns/rtnl.h).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "ns/netns.h"
#include "ns/rtnl.h"

namespace cryo::ns {

// What a fresh network namespace of this kernel has before anyone touches
// it: what the tree's namespace is compared with.
struct FreshNetDefaults {
  std::map<std::string, std::string> links;       // name -> kind (lo, fallback tunnels of loaded modules)
  std::set<std::string> rules;                     // policy routing rules, as their netlink payload
  std::map<std::string, std::string> sysctls;      // /proc/sys path -> value (writable ones)
  std::map<std::string, std::string> xt_tables;    // /proc/net/*_tables_names -> content
};
Status ReadFreshNetDefaults(FreshNetDefaults* out);

// Links and their addresses: lo is recorded; a link a fresh namespace has
// too (a fallback tunnel) is accepted while down and unconfigured; any
// other kind is refused by name.
Status ReadFreshLinks(Rtnl& nl, std::map<std::string, std::string>* out);
// `home_fd`: cryo's own namespace, where a veth's outside end may be.
Status DumpLinks(Rtnl& nl, const FreshNetDefaults& fresh, int home_fd, image::NetNamespace* out);
Status DumpAddresses(Rtnl& nl, image::NetNamespace* out);
Status RestoreLinks(Rtnl& nl, const image::NetNamespace& net, const VethPeerNamespaces* peers);
// Every link of the calling thread's namespace but lo set down.
Status TakeLinksDown(Rtnl& nl);

// veth pairs with their outside end (ns/net_veth.cc): `link` has its name
// and MTU; the rest of the pair from the RTM_NEWLINK message `h`.
Status DumpVeth(Rtnl& nl, const nlmsghdr* h, int home_fd, image::NetLink* link);
// `serial`: tells the outside ends apart in the dump's check (peers null).
Status CreateVeth(Rtnl& nl, const image::NetLink& link, const VethPeerNamespaces* peers, int serial);
Status RestoreAddresses(Rtnl& nl, const image::NetNamespace& net);

// Routes of the main table (those the kernel does not make from an
// address); refused: other tables, policy rules other than a fresh
// namespace's, nexthop objects, permanent neighbour entries.
Status DumpRoutes(Rtnl& nl, const FreshNetDefaults& fresh, image::NetNamespace* out);
Status RestoreRoutes(Rtnl& nl, const image::NetNamespace& net);
Status ReadRules(Rtnl& nl, std::set<std::string>* out);

// Refused by name when present: tc qdiscs other than a device's default,
// IPsec (xfrm) states and policies, iptables-legacy tables.
Status CheckTrafficControl(Rtnl& nl);
Status CheckXfrm();
Status ReadXtTables(std::map<std::string, std::string>* out);

// /proc/sys/net: the writable values of the calling thread's namespace.
Status ReadNetSysctls(std::map<std::string, std::string>* out);
Status DumpNetSysctls(const FreshNetDefaults& fresh, image::NetNamespace* out);
// A sysctl missing yet (`later`: a module's, such as nf_conntrack's, that
// the nft ruleset loads into the namespace) is left for after the ruleset.
Status RestoreNetSysctls(const image::NetNamespace& net, std::vector<const image::NetSysctl*>* later);

}  // namespace cryo::ns
