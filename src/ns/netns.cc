#include "ns/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "base/nft.h"
#include "ns/net_objects.h"
#include "ns/ns_thread.h"

namespace cryo::ns {

namespace {

// Runs `fn` on a new thread in a network namespace of its own, which dies
// with the thread (unshare(2) changes the calling thread only).
Status RunInFreshNetns(const std::function<Status()>& fn) {
  Status st = Status::Ok();
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      st = Status::FromErrno("unshare(CLONE_NEWNET) on a thread of cryo");
      return;
    }
    st = fn();
  });
  t.join();
  return st;
}

Status ReadFresh(FreshNetDefaults* out) {
  CRYO_ASSIGN_OR_RETURN(Rtnl nl, Rtnl::Open());
  CRYO_RETURN_IF_ERROR(ReadFreshLinks(nl, &out->links));
  CRYO_RETURN_IF_ERROR(ReadRules(nl, &out->rules));
  CRYO_RETURN_IF_ERROR(ReadNetSysctls(&out->sysctls));
  return ReadXtTables(&out->xt_tables);
}

Status CheckXtTables(const FreshNetDefaults& fresh) {
  std::map<std::string, std::string> mine;
  CRYO_RETURN_IF_ERROR(ReadXtTables(&mine));
  for (const auto& [file, tables] : mine)
    if (tables != fresh.xt_tables.at(file) && !tables.empty())
      return Status::Error("the tree's network namespace has iptables-legacy tables (" + file + ": " +
                           std::string(Trim(tables)) + "), which are not restored (nftables rules are)");
  return Status::Ok();
}

// The ruleset as nft(8) lists it, fed back to `nft -f` by the restore.
Result<std::string> ReadNftRuleset() {
  std::string text;
  CRYO_ASSIGN_OR_RETURN(const int rc, RunNftCommand({"list", "ruleset"}, "", &text));
  if (rc != 0) return Status::Error("nft list ruleset in the tree's network namespace failed: " + text);
  if (text.size() >= 65536)
    return Status::Error("the nftables ruleset of the tree's network namespace is larger than cryo carries (64 KiB)");
  return text;
}

Status DumpInside(const FreshNetDefaults& fresh, int home_fd, image::NetNamespace* out) {
  CRYO_ASSIGN_OR_RETURN(Rtnl nl, Rtnl::Open());
  CRYO_RETURN_IF_ERROR(DumpLinks(nl, fresh, home_fd, out));
  CRYO_RETURN_IF_ERROR(DumpAddresses(nl, out));
  CRYO_RETURN_IF_ERROR(DumpRoutes(nl, fresh, out));
  CRYO_RETURN_IF_ERROR(CheckTrafficControl(nl));
  CRYO_RETURN_IF_ERROR(CheckXfrm());
  CRYO_RETURN_IF_ERROR(CheckXtTables(fresh));
  CRYO_RETURN_IF_ERROR(DumpNetSysctls(fresh, out));
  CRYO_ASSIGN_OR_RETURN(std::string ruleset, ReadNftRuleset());
  out->set_nft_ruleset(ruleset);
  return Status::Ok();
}

// `ip netns add` keeps a namespace alive with a bind mount of its nsfs
// file: a restore would not be the namespace that mount names.
Status CheckNotMounted(uint64_t ino) {
  CRYO_ASSIGN_OR_RETURN(std::string mounts, ReadFileToString("/proc/self/mountinfo"));
  const std::string root = "net:[" + std::to_string(ino) + "]";
  for (std::string_view line : SplitLines(mounts)) {
    const std::vector<std::string_view> w = SplitWords(line);
    if (w.size() > 4 && w[3] == root)
      return Status::Error("the tree's network namespace " + root + " is mounted at " + std::string(w[4]) +
                           " (ip netns add): a restored namespace would not be the one mounted there");
  }
  return Status::Ok();
}

}  // namespace

Status TakeTreeLinksDown(pid_t pid) {
  return RunInNamespacesOf(pid, CLONE_NEWNET, [] {
    CRYO_ASSIGN_OR_RETURN(Rtnl nl, Rtnl::Open());
    return TakeLinksDown(nl);
  });
}

Status DumpNetNamespace(pid_t pid, image::NetNamespace* out) {
  CRYO_ASSIGN_OR_RETURN(uint64_t ino, NsInode(pid, "net"));
  CRYO_RETURN_IF_ERROR(CheckNotMounted(ino));
  FreshNetDefaults fresh;
  CRYO_RETURN_IF_ERROR(RunInFreshNetns([&] { return ReadFresh(&fresh); }));
  // cryo's own namespace (the calling thread may be visiting the tree's),
  // where the outside end of a veth pair may be.
  UniqueFd home(HomeNetFd() >= 0 ? ::fcntl(HomeNetFd(), F_DUPFD_CLOEXEC, 0)
                                 : ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home.valid()) return Status::FromErrno("opening cryo's network namespace");
  CRYO_RETURN_IF_ERROR(RunInNamespacesOf(pid, CLONE_NEWNET, [&] { return DumpInside(fresh, home.get(), out); }));
  // Refused now rather than failing the restore: the image rebuilt once.
  CRYO_RETURN_IF_ERROR(RunInFreshNetns([&] { return RestoreNetNamespace(*out, nullptr); })
                           .Prefixed("rebuilding the namespace in a throwaway one (checked at dump)"));
  LOG_DEBUG("network namespace: %d links, %d addresses, %d routes, %d sysctls, nft ruleset of %zu bytes",
            out->links_size(), out->addresses_size(), out->routes_size(), out->sysctls_size(),
            out->nft_ruleset().size());
  return Status::Ok();
}

Status RestoreNetNamespace(const image::NetNamespace& net, const VethPeerNamespaces* peers,
                           const std::string& lock_script) {
  CRYO_ASSIGN_OR_RETURN(Rtnl nl, Rtnl::Open());
  if (!lock_script.empty()) {
    std::string output;
    CRYO_ASSIGN_OR_RETURN(const int rc, RunNftCommand({"-f", "-"}, lock_script, &output));
    if (rc != 0) return Status::Error("nft -f with the image's network lock failed: " + output);
  }
  CRYO_RETURN_IF_ERROR(RestoreLinks(nl, net, peers));
  std::vector<const image::NetSysctl*> later;
  CRYO_RETURN_IF_ERROR(RestoreNetSysctls(net, &later));
  CRYO_RETURN_IF_ERROR(RestoreAddresses(nl, net));
  CRYO_RETURN_IF_ERROR(RestoreRoutes(nl, net));
  if (!net.nft_ruleset().empty()) {
    std::string output;
    CRYO_ASSIGN_OR_RETURN(const int rc, RunNftCommand({"-f", "-"}, net.nft_ruleset(), &output));
    if (rc != 0) return Status::Error("nft -f with the namespace's ruleset failed: " + output);
  }
  for (const image::NetSysctl* s : later)
    CRYO_RETURN_IF_ERROR(WriteSysctl(s->path(), s->value()).Prefixed("network namespace sysctl"));
  return Status::Ok();
}

Result<NetnsVisit> NetnsVisit::Enter(pid_t pid) {
  NetnsVisit v;
  CRYO_ASSIGN_OR_RETURN(uint64_t theirs, NsInode(pid, "net"));
  CRYO_ASSIGN_OR_RETURN(uint64_t mine, NsInode(0, "net"));
  if (theirs == mine) return v;
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home.valid()) return Status::FromErrno("open /proc/thread-self/ns/net");
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  UniqueFd there(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!there.valid()) return Status::FromErrno("open " + path);
  if (::setns(there.get(), CLONE_NEWNET) != 0) return Status::FromErrno("setns into the network namespace of pid " +
                                                                        std::to_string(pid));
  SetHomeNetInode(mine);
  SetHomeNetFd(home.get());
  v.home_ = std::move(home);
  return v;
}

NetnsVisit::~NetnsVisit() {
  if (!home_.valid()) return;
  if (::setns(home_.get(), CLONE_NEWNET) != 0) LOG_ERROR("setns back into cryo's network namespace: %s", std::strerror(errno));
  SetHomeNetInode(0);
  SetHomeNetFd(-1);
}

}  // namespace cryo::ns
