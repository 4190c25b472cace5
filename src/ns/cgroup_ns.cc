#include "ns/cgroup_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "cgroup/cgroup_paths.h"
#include "cgroup/cgroup_restore.h"
#include "ns/ns_thread.h"
#include "ns/tree_pidns.h"
#include "ns/user_ns.h"
#include "proc/proc.h"

namespace cryo::ns {

namespace {

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }

// /proc/PID/cgroup of each of `pids` as a process of `pid`'s cgroup
// namespace reads it (a forked child of cryo that joined it with setns(2)):
// the text of each, in order.
Result<std::vector<std::string>> ReadInsideCgroupNs(pid_t pid, const std::vector<pid_t>& pids) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/cgroup";
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Status::FromErrno("open " + path);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd r(p[0]), w(p[1]);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork (reading cgroups inside the tree's cgroup namespace)");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    r.reset();
    if (::setns(ns.get(), CLONE_NEWCGROUP) != 0) {
      (void)WriteAll(w.get(), "E", 1);
      ::_exit(1);
    }
    std::string out;
    for (pid_t q : pids) {
      auto text = ReadFileToString("/proc/" + std::to_string(q) + "/cgroup");
      out += text.ok() ? *text : std::string();
      out += '\0';
    }
    ::_exit(WriteAll(w.get(), out.data(), out.size()) ? 0 : 1);
  }
  w.reset();
  const std::string text = ReadToEof(r.get());
  int st;
  while (::waitpid(child, &st, 0) < 0)
    if (errno != EINTR) return Status::FromErrno("waitpid");
  if (text == "E") return Status::Error("setns into the cgroup namespace of " + Pid(pid) + " failed");
  std::vector<std::string> out;
  for (size_t at = 0; at < text.size();) {
    const size_t end = text.find('\0', at);
    if (end == std::string::npos) break;
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  if (out.size() != pids.size()) return Status::Error("reading cgroups inside the cgroup namespace of " + Pid(pid));
  return out;
}

}  // namespace

Result<std::string> CgroupNsRoot(const std::string& cryo_view, const std::string& inside_view) {
  if (inside_view.starts_with("/.."))
    return Status::Error("it is in cgroup " + cryo_view + ", outside the root of its cgroup namespace (it reads " +
                         inside_view + ")");
  if (inside_view == "/") return cryo_view;
  // inside_view starts with '/': the suffix is whole components.
  if (!inside_view.starts_with("/") || !cryo_view.ends_with(inside_view))
    return Status::Error("its cgroup " + cryo_view + " does not end with what it reads inside its cgroup namespace (" +
                         inside_view + ")");
  const std::string root = cryo_view.substr(0, cryo_view.size() - inside_view.size());
  return root.empty() ? "/" : root;
}

Status DumpCgroupNamespace(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                           std::set<std::string>* features) {
  if (pids.empty()) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, "cgroup"));
  std::map<uint64_t, pid_t> seen;
  for (pid_t p : pids) {
    CRYO_ASSIGN_OR_RETURN(uint64_t ino, NsInode(p, "cgroup"));
    seen.emplace(ino, p);
  }
  if (seen.size() == 1 && seen.begin()->first == mine) return Status::Ok();
  if (seen.size() > 1) {
    auto a = seen.begin(), b = std::next(a);
    return Status::Error(Pid(a->second) + " lives in cgroup namespace cgroup:[" + std::to_string(a->first) + "] and " +
                         Pid(b->second) + " in cgroup:[" + std::to_string(b->first) + "]: a tree is restored only "
                         "with one cgroup namespace (cryo's, or its own shared by all of its processes)");
  }
  const uint64_t owned = seen.begin()->first;
  const std::string link = "cgroup:[" + std::to_string(owned) + "]";
  CRYO_RETURN_IF_ERROR(proc::ForEachPidOutside(tree, [&](pid_t p) {
    if (p == 1 && DumpingInTreePidns()) return Status::Ok();  // replaced by the restore's init
    auto ino = NsInode(p, "cgroup");
    if (!ino.ok() || *ino != owned) return Status::Ok();
    return Status::Error(Pid(p) + ", outside the tree, lives in the tree's cgroup namespace " + link +
                         ": a restore would not share the namespace with it (dump the tree that holds every process "
                         "of the namespace)");
  }));
  CRYO_ASSIGN_OR_RETURN(std::vector<cgroup::Membership> own, cgroup::ReadProcCgroup("/proc/self/cgroup"));
  std::map<std::string, std::string> cryo_cgroup;
  for (const cgroup::Membership& m : own) cryo_cgroup[m.hierarchy] = m.path;
  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> inside, ReadInsideCgroupNs(pids.front(), pids));
  std::map<std::string, std::string> roots;  // hierarchy -> the namespace's root, as cryo sees it
  for (size_t i = 0; i < pids.size(); ++i) {
    const std::string who = Pid(pids[i]);
    CRYO_ASSIGN_OR_RETURN(std::vector<cgroup::Membership> outside,
                          cgroup::ReadProcCgroup("/proc/" + std::to_string(pids[i]) + "/cgroup"));
    auto in = cgroup::ParseProcCgroup(inside[i]);
    if (!in.ok()) return in.status().Prefixed(who + " inside its cgroup namespace");
    for (const cgroup::Membership& o : outside) {
      auto it = std::find_if(in->begin(), in->end(), [&](const auto& m) { return m.hierarchy == o.hierarchy; });
      if (it == in->end()) return Status::Error(who + ": hierarchy " + cgroup::HierarchyName(o.hierarchy) +
                                                " is missing inside its cgroup namespace");
      auto root = CgroupNsRoot(o.path, it->path);
      if (!root.ok()) return root.status().Prefixed(who + ", cgroup hierarchy " + cgroup::HierarchyName(o.hierarchy));
      auto [at, fresh] = roots.emplace(o.hierarchy, *root);
      if (!fresh && at->second != *root)
        return Status::Error(who + ": the root of its cgroup namespace in hierarchy " +
                             cgroup::HierarchyName(o.hierarchy) + " reads " + *root + ", another process's " +
                             at->second);
    }
  }
  for (const auto& [hierarchy, root] : roots) {
    const auto base = cryo_cgroup.find(hierarchy);
    if (base == cryo_cgroup.end())
      return Status::Error("the tree's cgroup namespace has a root in hierarchy " + cgroup::HierarchyName(hierarchy) +
                           ", which cryo is not in");
    image::CgroupPath* c = out->mutable_cgroup()->add_roots();
    c->set_hierarchy(hierarchy);
    c->set_path(cgroup::RelativePath(root, base->second));
  }
  features->insert("cgroup-ns");
  return Status::Ok();
}

Status EnterFreshCgroupNamespace(const image::Inventory& inv, const std::vector<std::string>& root_procs_files) {
  if (std::find(inv.features().begin(), inv.features().end(), "cgroup-ns") == inv.features().end())
    return Status::Ok();
  // unshare(2): the new namespace's root is the caller's cgroup of the moment.
  CRYO_RETURN_IF_ERROR(cgroup::JoinCgroups(root_procs_files).Prefixed("the root of the tree's cgroup namespace"));
  return UnshareOwned(CLONE_NEWCGROUP, "the tree's cgroup namespace");
}

}  // namespace cryo::ns
