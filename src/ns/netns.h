// A network namespace owned by the tree (`unshare --net`, `cryo run --ns
// net`): its lo, addresses, main-table routes, sysctls that differ from a
// fresh namespace's and its nftables ruleset are dumped (NetNamespace of
// ns.img, feature "net-ns") and rebuilt at restore in a fresh namespace that
// cryo's main thread enters before it makes any socket, so that every
// socket of the tree is made in it. Anything else the namespace holds is
// refused by name at dump (other links, policy routing, tc, xfrm,
// iptables-legacy, ...). The dump checks the image by rebuilding it once
// in a throwaway fresh namespace. A failed restore leaves nothing: the
// namespace dies with the processes that hold it.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// Reads the network namespace of `pid` into `out` (threads of cryo's that
// join it and fresh ones), or refuses what it holds that is not restored.
Status DumpNetNamespace(pid_t pid, image::NetNamespace* out);

// Before a kill-mode dump kills a tree that owns its network namespace and
// holds connections to peers outside: its links (but lo) are set down. The
// namespace goes with the tree, and the kernel's teardown of it may remove
// the nftables lock before the links (net/core/net_namespace.c runs the
// pernet exits in turn): a peer's packet arriving in between would find no
// socket and be answered with a reset. With the links down none arrives.
Status TakeTreeLinksDown(pid_t pid);

// Where the outside ends of the image's veth pairs are made (ns/net_veth.cc),
// by the name of their end in the tree's namespace: an fd of the namespace,
// and its name for messages.
struct VethPeerNamespaces {
  std::map<std::string, UniqueFd> fds;
  std::map<std::string, std::string> where;
};

// Before the fresh namespace is entered: for each veth, `user_path`
// (--veth-peer-ns) or else where its outside end was at the dump
// (/run/netns/NAME, or the dumping cryo's namespace, for which the caller's
// is taken).
Result<VethPeerNamespaces> OpenVethPeerNamespaces(const image::NetNamespace& net, const std::string& user_path);

// On the calling thread, which must be in the fresh namespace. `peers`
// null: the dump's check in a throwaway namespace, where the outside ends
// of veth pairs stay.
// `lock_script`: nft commands run before the links are made (the image's
// network lock).
Status RestoreNetNamespace(const image::NetNamespace& net, const VethPeerNamespaces* peers,
                           const std::string& lock_script = "");

// A failed restore deletes the veth pairs it made (their outside ends would
// otherwise keep their names until the fresh namespace is gone); a
// successful one keeps them.
void DeleteRestoredVeths();
void KeepRestoredVeths();

// While the dump reads the tree's sockets: cryo's main thread in the tree's
// network namespace, so that sock_diag and /proc/net answer about it
// (both are the namespace of the caller; socket(7), proc(5)). Goes back
// to cryo's own when destroyed.
class NetnsVisit {
 public:
  static Result<NetnsVisit> Enter(pid_t pid);
  NetnsVisit() = default;
  NetnsVisit(NetnsVisit&&) = default;
  NetnsVisit& operator=(NetnsVisit&&) = default;
  ~NetnsVisit();

 private:
  UniqueFd home_;
};

}  // namespace cryo::ns
