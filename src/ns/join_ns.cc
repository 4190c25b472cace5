#include "ns/join_ns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/unique_fd.h"

namespace cryo::ns {

namespace {

struct JoinKind {
  const char* name;
  int type;                   // CLONE_NEW*
  const char* owned_feature;  // the image's tree owned one of this kind
  const char* owned_what;
};
constexpr JoinKind kJoinKinds[] = {
    {"net", CLONE_NEWNET, "net-ns", "its own network namespace"},
    {"ipc", CLONE_NEWIPC, "ipc-ns", "its own IPC namespace (semaphores, message queues, shared memory)"},
    {"uts", CLONE_NEWUTS, "uts-ns", "its own UTS namespace (host and domain name)"},
    {"mnt", CLONE_NEWNS, "pid-ns", "its own PID namespace with the mount namespace that shows its /proc"},
    {"pid", CLONE_NEWPID, "pid-ns", "its own PID namespace"},
};

const char* KindName(int type) {
  for (const JoinKind& k : kJoinKinds)
    if (k.type == type) return k.name;
  if (type == CLONE_NEWUSER) return "user";
  if (type == CLONE_NEWCGROUP) return "cgroup";
  if (type == CLONE_NEWTIME) return "time";
  return "unknown";
}

struct Join {
  const JoinKind* kind;
  std::string path;
};

Result<Join> Parse(const std::string& arg) {
  const size_t colon = arg.find(':');
  if (colon == std::string::npos || colon + 1 >= arg.size())
    return Status::Error("--join-ns " + arg + ": expected KIND:PATH (e.g. net:/proc/PID/ns/net)");
  const std::string kind = arg.substr(0, colon);
  for (const JoinKind& k : kJoinKinds)
    if (kind == k.name) return Join{&k, arg.substr(colon + 1)};
  return Status::Error("--join-ns " + arg + ": unknown namespace kind \"" + kind + "\" (net, ipc, uts, mnt, pid)");
}

bool Has(const image::Inventory& inv, const char* f) {
  return std::find(inv.features().begin(), inv.features().end(), f) != inv.features().end();
}

Result<std::pair<dev_t, ino_t>> DirId(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno("stat " + dir);
  return std::make_pair(st.st_dev, st.st_ino);
}

}  // namespace

Status ParseJoinNs(const std::string& arg) { return Parse(arg).status(); }

Status JoinNamespaces(const std::vector<std::string>& args, const image::Inventory& inv,
                      const std::string& images_dir, bool new_pidns) {
  std::vector<std::pair<Join, UniqueFd>> joins;
  for (const std::string& arg : args) {
    CRYO_ASSIGN_OR_RETURN(Join j, Parse(arg));
    const std::string what = "--join-ns " + arg;
    for (const auto& [other, fd] : joins)
      if (other.kind == j.kind) return Status::Error(what + ": a second " + j.kind->name + " namespace to join");
    if (Has(inv, j.kind->owned_feature))
      return Status::Error(what + ": the image's tree owned " + j.kind->owned_what +
                           ", which the restore makes again with its content; joining another would lose it");
    if (j.kind->type == CLONE_NEWNS && Has(inv, "mount-ns"))
      return Status::Error(what + ": the image's tree owned its own mount namespace, which the restore makes again "
                           "with its mounts; joining another would lose them");
    if (j.kind->type == CLONE_NEWPID)
      return Status::Error(what + ": joining a PID namespace is not supported yet (use --pidns new)");
    if (j.kind->type == CLONE_NEWNS && new_pidns)
      return Status::Error(what + ": with --pidns new the restore's own mount namespace shows the new namespace's "
                           "/proc; joining another mount namespace would lose it");
    if (j.kind->type == CLONE_NEWNET && !inv.net_lock().empty())
      return Status::Error(what + ": the image holds established TCP connections (network lock " + inv.net_lock() +
                           "), which live in the network namespace they were dumped in");
    UniqueFd fd(::open(j.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Status::FromErrno(what + ": open " + j.path);
    const int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
    if (type < 0) return Status::FromErrno(what + ": " + j.path + " is no namespace file (NS_GET_NSTYPE)");
    if (type != j.kind->type)
      return Status::Error(what + ": " + j.path + " is a " + KindName(type) + " namespace, not " + j.kind->name);
    joins.emplace_back(std::move(j), std::move(fd));
  }
  for (const auto& [j, fd] : joins) {
    CRYO_ASSIGN_OR_RETURN(auto before, DirId(images_dir));
    // setns(2): the calling thread only; cryo forks the tree from it.
    if (::setns(fd.get(), j.kind->type) != 0) return Status::FromErrno("--join-ns: setns " + j.path);
    if (j.kind->type != CLONE_NEWNS) continue;
    auto after = DirId(images_dir);
    if (!after.ok() || *after != before)
      return Status::Error("--join-ns mnt:" + j.path + ": the image directory " + images_dir +
                           " is not the same in that mount namespace (make it visible there)");
  }
  return Status::Ok();
}

}  // namespace cryo::ns
