// veth pairs with one end in the tree's network namespace and the other
// outside (veth(4)): the end inside is recorded like any link (name, MAC,
// MTU, up, addresses), the outside one by its name, MAC, MTU, up state and
// the namespace it lives in, which the inside end knows only as a
// namespace id (IFLA_LINK_NETNSID, rtnetlink(7); net/core/net_namespace.c
// peernet2id). At restore the pair is made in the fresh namespace with its
// outside end made directly in the namespace it was in (VETH_INFO_PEER with
// IFLA_NET_NS_FD, as `ip link add ... peer name P netns N`).
#include <fcntl.h>
#include <sched.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "ns/net_objects.h"

namespace cryo::ns {

namespace {

// The directory `ip netns add NAME` mounts namespaces in (ip-netns(8)).
constexpr char kNetnsDir[] = "/run/netns";

// Flags a user sets on a link that the restore does not set again.
constexpr unsigned kRefusedFlags = IFF_PROMISC | IFF_ALLMULTI | IFF_NOARP;

// RTM_GETNSID: the id the calling thread's namespace gives the namespace of
// `fd` (-1: none, NETNSA_NSID_NOT_ASSIGNED).
Result<int32_t> NsIdOf(Rtnl& nl, int fd) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = RTM_GETNSID;
  auto* g = static_cast<rtgenmsg*>(mnl_nlmsg_put_extra_header(h, sizeof(rtgenmsg)));
  g->rtgen_family = AF_UNSPEC;
  mnl_attr_put_u32(h, NETNSA_FD, static_cast<uint32_t>(fd));
  int32_t id = NETNSA_NSID_NOT_ASSIGNED;
  CRYO_RETURN_IF_ERROR(nl.Get(h, [&](const nlmsghdr* r) {
    auto attrs = ParseAttrs(r, sizeof(rtgenmsg), NETNSA_MAX);
    if (attrs[NETNSA_NSID]) id = static_cast<int32_t>(mnl_attr_get_u32(attrs[NETNSA_NSID]));
    return Status::Ok();
  }, "the id of a network namespace (RTM_GETNSID)"));
  return id;
}

struct PeerLink {
  std::string name, mac;
  uint32_t mtu = 0;
  unsigned flags = 0;
};

// RTM_GETLINK of link `index` of the namespace `nsid` names.
Result<PeerLink> ReadPeer(Rtnl& nl, uint32_t index, int32_t nsid, const std::string& what) {
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = RTM_GETLINK;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = static_cast<int>(index);
  mnl_attr_put_u32(h, IFLA_TARGET_NETNSID, static_cast<uint32_t>(nsid));
  PeerLink p;
  CRYO_RETURN_IF_ERROR(nl.Get(h, [&](const nlmsghdr* r) {
    const auto* pi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(r));
    auto attrs = ParseAttrs(r, sizeof(*pi), IFLA_MAX);
    p.flags = pi->ifi_flags;
    if (attrs[IFLA_IFNAME]) p.name = mnl_attr_get_str(attrs[IFLA_IFNAME]);
    if (attrs[IFLA_MTU]) p.mtu = mnl_attr_get_u32(attrs[IFLA_MTU]);
    p.mac = AttrBytes(attrs[IFLA_ADDRESS]);
    return Status::Ok();
  }, "the outside end of " + what));
  if (p.name.empty()) return Status::Error("the outside end of " + what + " has no name");
  return p;
}

// Where the outside end lives: cryo's namespace, or one `ip netns add` made.
Status LocatePeer(Rtnl& nl, int32_t nsid, int home_fd, image::VethPeer* out) {
  if (home_fd >= 0) {
    CRYO_ASSIGN_OR_RETURN(int32_t home, NsIdOf(nl, home_fd));
    if (home == nsid) {
      out->set_in_dumper_netns(true);
      return Status::Ok();
    }
  }
  DIR* d = ::opendir(kNetnsDir);
  if (!d) return Status::Ok();
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string(kNetnsDir) + "/" + e->d_name;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    auto id = NsIdOf(nl, fd.get());
    if (id.ok() && *id == nsid) {
      out->set_netns_path(path);
      break;
    }
  }
  ::closedir(d);
  return Status::Ok();
}

// Link `name` of the namespace `ns_fd` (-1: the caller's) set up, from a
// thread that joined it (setns(2) changes the calling thread only).
Status SetUpIn(int ns_fd, const std::string& name, const std::string& where) {
  Status st = Status::Ok();
  std::thread t([&] {
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) {
      st = Status::FromErrno("setns into " + where);
      return;
    }
    auto nl = Rtnl::Open();
    auto index = LinkIndex(name);
    if (!nl.ok() || !index.ok()) {
      st = nl.ok() ? index.status() : nl.status();
      return;
    }
    NlBuffer buf;
    nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
    h->nlmsg_type = RTM_NEWLINK;
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = *index;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    st = nl->Request(h, "setting " + name + " up in " + where);
  });
  t.join();
  return st;
}

std::vector<std::string>& MadeVeths() {
  static std::vector<std::string> made;
  return made;
}

}  // namespace

Status DumpVeth(Rtnl& nl, const nlmsghdr* h, int home_fd, image::NetLink* link) {
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h));
  auto attrs = ParseAttrs(h, sizeof(*ifi), IFLA_MAX);
  const std::string what = "veth " + link->name();
  if (!attrs[IFLA_LINK_NETNSID])
    return Status::Error(what + " has its other end in the tree's namespace too: a veth pair inside the namespace "
                         "is not restored yet");
  if (ifi->ifi_flags & kRefusedFlags)
    return Status::Error(what + " is promiscuous, all-multicast or noarp, which is not restored");
  if (attrs[IFLA_MASTER]) return Status::Error(what + " is enslaved to a bridge or bond, which is not restored");
  if (attrs[IFLA_IFALIAS] && mnl_attr_get_payload_len(attrs[IFLA_IFALIAS]) > 1)
    return Status::Error(what + " has an alias (ip link set alias), which is not restored");
  if (attrs[IFLA_TXQLEN] && mnl_attr_get_u32(attrs[IFLA_TXQLEN]) != 1000)
    return Status::Error(what + " has a transmit queue length other than 1000, which is not restored");
  if (const nlattr* xdp = attrs[IFLA_XDP]) {
    for (const auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(xdp));
         mnl_attr_ok(a, static_cast<int>(static_cast<const char*>(mnl_attr_get_payload(xdp)) +
                                         mnl_attr_get_payload_len(xdp) - reinterpret_cast<const char*>(a)));
         a = mnl_attr_next(a))
      if (mnl_attr_get_type(a) == IFLA_XDP_ATTACHED && mnl_attr_get_u8(a) != XDP_ATTACHED_NONE)
        return Status::Error(what + " has an XDP program attached, which is not restored");
  }
  link->set_mac(AttrBytes(attrs[IFLA_ADDRESS]));
  const int32_t nsid = static_cast<int32_t>(mnl_attr_get_u32(attrs[IFLA_LINK_NETNSID]));
  const uint32_t peer_index = attrs[IFLA_LINK] ? mnl_attr_get_u32(attrs[IFLA_LINK]) : 0;
  CRYO_ASSIGN_OR_RETURN(PeerLink p, ReadPeer(nl, peer_index, nsid, what));
  image::VethPeer* peer = link->mutable_veth();
  peer->set_name(p.name);
  peer->set_mac(p.mac);
  peer->set_mtu(p.mtu);
  peer->set_flags(p.flags & IFF_UP);
  return LocatePeer(nl, nsid, home_fd, peer);
}

Result<VethPeerNamespaces> OpenVethPeerNamespaces(const image::NetNamespace& net, const std::string& user_path) {
  VethPeerNamespaces out;
  for (const image::NetLink& l : net.links()) {
    if (!l.has_veth()) continue;
    const image::VethPeer& p = l.veth();
    std::string path = user_path;
    if (path.empty()) path = p.netns_path();
    if (path.empty() && p.in_dumper_netns()) path = "/proc/self/ns/net";
    if (path.empty())
      return Status::Error("veth " + l.name() + "'s outside end " + p.name() +
                           " lived in a network namespace that was neither the dumping cryo's nor one under " +
                           kNetnsDir + ": name it with --veth-peer-ns PATH");
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
      return Status::FromErrno("the network namespace of veth " + l.name() + "'s outside end " + p.name() +
                               ": open " + path + (user_path.empty() ? " (give another with --veth-peer-ns PATH)" : ""));
    out.where[l.name()] = path == "/proc/self/ns/net" ? std::string("cryo's network namespace") : path;
    out.fds[l.name()] = std::move(fd);
  }
  return out;
}

Status CreateVeth(Rtnl& nl, const image::NetLink& l, const VethPeerNamespaces* peers, int serial) {
  const image::VethPeer& p = l.veth();
  // The dump's check: the outside end stays in the throwaway namespace,
  // under a name of its own.
  const bool check = peers == nullptr;
  const std::string peer_name = check ? "cryochk" + std::to_string(serial) : p.name();
  const int ns_fd = check ? -1 : peers->fds.at(l.name()).get();
  const std::string where = check ? std::string("the throwaway namespace") : peers->where.at(l.name());
  NlBuffer buf;
  nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
  h->nlmsg_type = RTM_NEWLINK;
  h->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(h, IFLA_IFNAME, l.name().c_str());
  if (!l.mac().empty()) mnl_attr_put(h, IFLA_ADDRESS, l.mac().size(), l.mac().data());
  if (l.mtu()) mnl_attr_put_u32(h, IFLA_MTU, l.mtu());
  nlattr* info = mnl_attr_nest_start(h, IFLA_LINKINFO);
  mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(h, VETH_INFO_PEER);
  // VETH_INFO_PEER carries a struct ifinfomsg before its attributes
  // (drivers/net/veth.c veth_newlink). Its flags cannot bring the peer up:
  // veth_open fails (ENOTCONN) while the pair is not linked yet.
  auto* pifi = static_cast<ifinfomsg*>(mnl_nlmsg_get_payload_tail(h));
  std::memset(pifi, 0, sizeof(*pifi));
  h->nlmsg_len += MNL_ALIGN(sizeof(ifinfomsg));
  pifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(h, IFLA_IFNAME, peer_name.c_str());
  if (!p.mac().empty()) mnl_attr_put(h, IFLA_ADDRESS, p.mac().size(), p.mac().data());
  if (p.mtu()) mnl_attr_put_u32(h, IFLA_MTU, p.mtu());
  if (ns_fd >= 0) mnl_attr_put_u32(h, IFLA_NET_NS_FD, static_cast<uint32_t>(ns_fd));
  mnl_attr_nest_end(h, peer);
  mnl_attr_nest_end(h, data);
  mnl_attr_nest_end(h, info);
  const std::string what = "making veth " + l.name() + " with its outside end " + peer_name + " in " + where;
  // The namespace of a tree just killed by its dump goes away a moment
  // after its last process (net/core/net_namespace.c cleanup_net runs from
  // a work queue), its veth pairs with it: a name still taken is waited for
  // (bounded).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    std::vector<char> copy(buf.bytes, buf.bytes + h->nlmsg_len);
    Status st = nl.Request(reinterpret_cast<nlmsghdr*>(copy.data()), what);
    if (st.ok()) break;
    if (st.err() != EEXIST) return st;
    if (check || std::chrono::steady_clock::now() > deadline)
      return Status::Error("veth " + l.name() + "'s outside end " + peer_name + " cannot be made in " + where +
                           ": a link of that name exists there (delete it, or restore once the original's "
                           "namespace is gone)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!check) MadeVeths().push_back(l.name());
  if (p.flags() & IFF_UP) CRYO_RETURN_IF_ERROR(SetUpIn(ns_fd, peer_name, where));
  if (check) return Status::Ok();
  LOG_DEBUG("veth %s made with its outside end %s in %s", l.name().c_str(), peer_name.c_str(), where.c_str());
  return Status::Ok();
}

void DeleteRestoredVeths() {
  auto nl = Rtnl::Open();
  for (const std::string& name : MadeVeths()) {
    auto index = LinkIndex(name);
    if (!nl.ok() || !index.ok()) continue;
    NlBuffer buf;
    nlmsghdr* h = mnl_nlmsg_put_header(buf.bytes);
    h->nlmsg_type = RTM_DELLINK;
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = *index;
    // Deleting one end deletes the pair (veth_dellink).
    if (Status st = nl->Request(h, "deleting veth " + name); !st.ok())
      LOG_ERROR("%s", st.message().c_str());
    else
      LOG_DEBUG("veth %s deleted with its outside end: the restore failed", name.c_str());
  }
  MadeVeths().clear();
}

void KeepRestoredVeths() { MadeVeths().clear(); }

}  // namespace cryo::ns
