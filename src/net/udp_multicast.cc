#include "net/udp_multicast.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "base/file_util.h"

namespace cryo {

namespace {

struct Group {
  int ifindex;
  sockaddr_storage group;
};

// Every group some socket or the kernel joined, per interface.
std::vector<Group> JoinedGroups() {
  std::vector<Group> out;
  // /proc/net/igmp: an interface line ("1\tlo : ..."), then its groups, each
  // a tab-led line whose first field is the address as a hex __be32 read in
  // host order (igmp_mc_seq_show).
  if (auto text = ReadFileToString("/proc/net/igmp"); text.ok()) {
    std::istringstream in(*text);
    std::string line;
    int ifindex = 0;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line[0] != '\t') {
        ifindex = std::atoi(line.c_str());
        continue;
      }
      std::istringstream f(line);
      std::string hex;
      f >> hex;
      Group g{ifindex, {}};
      auto* in4 = reinterpret_cast<sockaddr_in*>(&g.group);
      in4->sin_family = AF_INET;
      in4->sin_addr.s_addr = static_cast<in_addr_t>(std::strtoul(hex.c_str(), nullptr, 16));
      out.push_back(g);
    }
  }
  // /proc/net/igmp6: "IDX DEV ADDR(32 hex digits, network order) USERS ...".
  if (auto text = ReadFileToString("/proc/net/igmp6"); text.ok()) {
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      int ifindex = 0;
      std::string dev, hex;
      if (!(f >> ifindex >> dev >> hex) || hex.size() != 32) continue;
      Group g{ifindex, {}};
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&g.group);
      in6->sin6_family = AF_INET6;
      for (int i = 0; i < 16; ++i) in6->sin6_addr.s6_addr[i] = static_cast<uint8_t>(std::strtoul(hex.substr(i * 2, 2).c_str(), nullptr, 16));
      out.push_back(g);
    }
  }
  return out;
}

std::string GroupName(const Group& g) {
  char text[INET6_ADDRSTRLEN] = {};
  if (g.group.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&g.group)->sin_addr, text, sizeof(text));
  else
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&g.group)->sin6_addr, text, sizeof(text));
  char ifname[IF_NAMESIZE] = {};
  const bool named = ::if_indextoname(static_cast<unsigned>(g.ifindex), ifname) != nullptr;
  return std::string(text) + " on " + (named ? ifname : "interface " + std::to_string(g.ifindex));
}

int Level(const sockaddr_storage& group) { return group.ss_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6; }

}  // namespace

Status DumpMemberships(int fd, int family, const std::string& what, Memberships* out) {
  for (const Group& g : JoinedGroups()) {
    if (family == AF_INET && g.group.ss_family != AF_INET) continue;
    // group_filter with room for a few sources: enough to tell a filter.
    alignas(group_filter) char buf[GROUP_FILTER_SIZE(4)] = {};
    auto* gf = reinterpret_cast<group_filter*>(buf);
    gf->gf_interface = static_cast<uint32_t>(g.ifindex);
    gf->gf_group = g.group;
    gf->gf_numsrc = 4;
    socklen_t len = sizeof(buf);
    if (::getsockopt(fd, Level(g.group), MCAST_MSFILTER, gf, &len) != 0) {
      if (errno == EADDRNOTAVAIL || errno == EINVAL || errno == ENOPROTOOPT) continue;  // not this socket's
      return Status::FromErrno(what + ": MCAST_MSFILTER for group " + GroupName(g));
    }
    if (gf->gf_fmode != MCAST_EXCLUDE || gf->gf_numsrc != 0)
      return Status::Error(what + " joined multicast group " + GroupName(g) +
                           " with a source filter (source-specific multicast), which cryo does not restore");
    image::MulticastMembership* m = out->Add();
    m->set_ifindex(g.ifindex);
    m->set_group(std::string(reinterpret_cast<const char*>(&g.group),
                             g.group.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)));
  }
  return Status::Ok();
}

Status RestoreMemberships(int fd, int /*family*/, const Memberships& memberships, const std::string& what) {
  for (const image::MulticastMembership& m : memberships) {
    group_req req{};
    req.gr_interface = static_cast<uint32_t>(m.ifindex());
    std::memcpy(&req.gr_group, m.group().data(), std::min(m.group().size(), sizeof(req.gr_group)));
    if (::setsockopt(fd, Level(req.gr_group), MCAST_JOIN_GROUP, &req, sizeof(req)) != 0)
      return Status::FromErrno(what + ": joining multicast group " + GroupName({m.ifindex(), req.gr_group}));
  }
  return Status::Ok();
}

}  // namespace cryo
