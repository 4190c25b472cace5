#include "ns/namespaces.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "base/log.h"
#include "ns/cgroup_ns.h"
#include "ns/ipc_objects.h"
#include "ns/netns.h"
#include "ns/ns_thread.h"
#include "ns/tree_mntns.h"
#include "ns/tree_pidns.h"
#include "ns/user_ns.h"
#include "proc/proc.h"

namespace cryo::ns {

namespace {

struct NsKind {
  const char* name;  // /proc/PID/ns/NAME
  int type;          // CLONE_NEW*
  const char* what;
  const char* feature;
};
constexpr NsKind kKinds[] = {
    {"uts", CLONE_NEWUTS, "UTS namespace", "uts-ns"},
    {"ipc", CLONE_NEWIPC, "IPC namespace", "ipc-ns"},
    {"net", CLONE_NEWNET, "network namespace", "net-ns"},
};

bool HasFeature(const image::Inventory& inv, const char* f) {
  return std::find(inv.features().begin(), inv.features().end(), f) != inv.features().end();
}

std::string Link(const char* name, uint64_t ino) { return std::string(name) + ":[" + std::to_string(ino) + "]"; }

// The namespace of kind `k` the tree owns (0: cryo's), or a refusal if its
// processes are in different ones or a process outside shares it.
Result<uint64_t> OwnedNamespace(const NsKind& k, const std::vector<pid_t>& pids, const std::set<pid_t>& tree) {
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, k.name));
  std::map<uint64_t, pid_t> seen;  // namespace -> first process in it
  for (pid_t p : pids) {
    CRYO_ASSIGN_OR_RETURN(uint64_t ino, NsInode(p, k.name));
    seen.emplace(ino, p);
  }
  if (seen.size() == 1 && seen.begin()->first == mine) return 0;
  if (seen.size() > 1) {
    auto a = seen.begin(), b = std::next(a);
    return Status::Error("pid " + std::to_string(a->second) + " lives in " + k.what + " " + Link(k.name, a->first) +
                         " and pid " + std::to_string(b->second) + " in " + Link(k.name, b->first) +
                         ": a tree is restored only with one " + k.what + " (cryo's, or its own shared by all of its "
                         "processes)");
  }
  const uint64_t owned = seen.begin()->first;
  CRYO_RETURN_IF_ERROR(proc::ForEachPidOutside(tree, [&](pid_t p) {
    // Pid 1 of the tree's own PID namespace (cryo's init, or the user's, as
    // under `unshare --pid --fork sh -c ...`): a restore (--pidns new) puts
    // cryo's init in its place, as for the mount namespace (tree_mntns.cc).
    if (p == 1 && (IsCryoInit() || DumpingInTreePidns())) return Status::Ok();
    auto ino = NsInode(p, k.name);
    if (!ino.ok() || *ino != owned) return Status::Ok();
    return Status::Error("pid " + std::to_string(p) + ", outside the tree, lives in the tree's " + k.what + " " +
                         Link(k.name, owned) + ": a restore would not share the namespace with it (dump the tree "
                         "that holds every process of the namespace)");
  }));
  return owned;
}

// Segments are restored with the processes that attach them (mem/shm_dump.cc);
// one attached by nobody lives only in the namespace.
Status CheckUnattachedSegments() {
  CRYO_ASSIGN_OR_RETURN(auto rows, ReadSysvipcTable("shm", 7));
  for (const auto& row : rows)
    if (row[6] == 0)  // nattch
      return Status::Error("SysV shared memory segment id " + std::to_string(row[1]) +
                           " of the tree's IPC namespace is attached by no process, which is not restored yet");
  return Status::Ok();
}

Status DumpIpc(image::IpcNamespace* out) {
  CRYO_RETURN_IF_ERROR(DumpIpcSysctls(out));
  CRYO_RETURN_IF_ERROR(CheckUnattachedSegments());
  CRYO_RETURN_IF_ERROR(DumpSemaphores(out));
  CRYO_RETURN_IF_ERROR(DumpMsgQueues(out));
  return DumpPosixMqueues(out);
}

}  // namespace

Status DumpNamespaces(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                      std::set<std::string>* features) {
  if (pids.empty()) return Status::Ok();
  CRYO_RETURN_IF_ERROR(CheckTreePidns(pids.front(), tree, features));
  CRYO_RETURN_IF_ERROR(DumpUserNamespace(pids, tree, out, features));
  CRYO_RETURN_IF_ERROR(DumpCgroupNamespace(pids, tree, out, features));
  if (const image::MountNamespace* mounts = TreeMountTable()) {  // entered before the seize (ns/tree_mntns.h)
    CRYO_RETURN_IF_ERROR(CheckTreeMountNsOwned(tree));
    *out->mutable_mounts() = *mounts;
    features->insert("mount-ns");
    if (mounts->absent_size() > 0) features->insert("mount-ns-absent");
    for (const image::MountEntry& e : mounts->mounts())
      if (e.action() == image::MOUNT_DEVPTS) features->insert("mount-devpts");
  }
  int types = 0;
  for (const NsKind& k : kKinds) {
    CRYO_ASSIGN_OR_RETURN(uint64_t owned, OwnedNamespace(k, pids, tree));
    if (!owned) continue;
    types |= k.type;
    features->insert(k.feature);
  }
  if (types & CLONE_NEWNET) {  // on threads of its own (ns/netns.h)
    CRYO_RETURN_IF_ERROR(DumpNetNamespace(pids.front(), out->mutable_net()).Prefixed("the tree's network namespace"));
    for (const image::NetLink& l : out->net().links())
      if (l.has_veth()) features->insert("net-veth");
  }
  types &= ~CLONE_NEWNET;
  if (!types) return Status::Ok();
  return RunInNamespacesOf(pids.front(), types, [&]() -> Status {
    if (types & CLONE_NEWUTS) {
      struct utsname u;
      if (::uname(&u) != 0) return Status::FromErrno("uname in the tree's UTS namespace");
      out->mutable_uts()->set_hostname(u.nodename);
      out->mutable_uts()->set_domainname(u.domainname);
    }
    if (types & CLONE_NEWIPC) CRYO_RETURN_IF_ERROR(DumpIpc(out->mutable_ipc()).Prefixed("the tree's IPC namespace"));
    return Status::Ok();
  });
}

Status EnterFreshNamespaces(const image::Inventory& inv, const image::NamespaceTable& ns,
                            const std::string& veth_peer_ns, const std::string& lock_script) {
  int types = 0;
  for (const NsKind& k : kKinds)
    if (HasFeature(inv, k.feature)) types |= k.type;
  if (!types) return Status::Ok();
  // Opened from cryo's namespace: the outside ends of veth pairs go there by default.
  CRYO_ASSIGN_OR_RETURN(VethPeerNamespaces peers, OpenVethPeerNamespaces(ns.net(), veth_peer_ns));
  // In the tree's user namespace if it has one (ns/user_ns.h).
  CRYO_RETURN_IF_ERROR(UnshareOwned(types, "fresh UTS/IPC/network namespaces for the tree"));
  // Before any socket of the tree is made (FdPool): sockets belong to the
  // namespace of the thread that makes them.
  if (types & CLONE_NEWNET)
    CRYO_RETURN_IF_ERROR(RestoreNetNamespace(ns.net(), &peers, lock_script).Prefixed("the tree's network namespace"));
  if (types & CLONE_NEWUTS) {
    const std::string& h = ns.uts().hostname();
    const std::string& d = ns.uts().domainname();
    if (::sethostname(h.data(), h.size()) != 0) return Status::FromErrno("sethostname \"" + h + "\"");
    if (::setdomainname(d.data(), d.size()) != 0) return Status::FromErrno("setdomainname \"" + d + "\"");
  }
  if (types & CLONE_NEWIPC) {
    const image::IpcNamespace& ipc = ns.ipc();
    CRYO_RETURN_IF_ERROR(RestoreIpcSysctls(ipc, /*last=*/false));
    CRYO_RETURN_IF_ERROR(RestoreSemaphores(ipc));
    CRYO_RETURN_IF_ERROR(RestoreMsgQueues(ipc));
    CRYO_RETURN_IF_ERROR(RestorePosixMqueues(ipc));
    LOG_DEBUG("fresh IPC namespace: %d semaphore sets, %d message queues, %d POSIX message queues",
              ipc.semaphores_size(), ipc.msg_queues_size(), ipc.mqueues_size());
  }
  return Status::Ok();
}

Status FinishFreshNamespaces(const image::Inventory& inv, const image::NamespaceTable& ns) {
  if (!HasFeature(inv, "ipc-ns")) return Status::Ok();
  return RestoreIpcSysctls(ns.ipc(), /*last=*/true);
}

}  // namespace cryo::ns
