// The multicast groups a UDP socket joined. No getsockopt(2) lists them:
// the groups joined on this machine are in /proc/net/igmp and igmp6 (per
// interface, for every socket), and getsockopt(MCAST_MSFILTER) on one of
// them answers only for a socket that joined it (EADDRNOTAVAIL otherwise,
// ip_mc_gsfget / ip6_mc_msfget). Any-source memberships are joined again
// with MCAST_JOIN_GROUP; a source filter is refused by name.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

using Memberships = google::protobuf::RepeatedPtrField<image::MulticastMembership>;

Status DumpMemberships(int fd, int family, const std::string& what, Memberships* out);
Status RestoreMemberships(int fd, int family, const Memberships& memberships, const std::string& what);

}  // namespace cryo
