// Namespaces (/proc/PID/ns, namespaces(7)) and cgroups (/proc/PID/cgroup,
// cgroups(7)): a restored process is a fork of cryo and lives in cryo's
// namespaces, so any other namespace is refused until cryo restores it (a
// UTS, IPC, network, time or user namespace of the tree's own is: src/ns/; so are its own PID
// namespace and the mount namespace that goes with it (ns/tree_pidns.h) and its
// own mount namespace, which cryo dumps from inside: ns/tree_mntns.h); its
// cgroups are restored (src/cgroup/), a thread's own cgroup is refused; so
// is a cgroup namespace of the tree's own (ns/cgroup_ns.h).
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"
#include "ns/tree_mntns.h"
#include "ns/tree_pidns.h"

namespace cryo::audit {

namespace {

struct NsKind {
  std::string_view name;
  std::string_view what;  // completes "lives in ..."
};
constexpr NsKind kNamespaces[] = {
    {"cgroup", "a cgroup namespace"},
    {"ipc", "an IPC namespace"},
    {"mnt", "a mount namespace"},
    {"net", "a network namespace"},
    {"pid", "a PID namespace"},
    {"pid_for_children", "a PID namespace for its children"},
    {"time", "a time namespace"},
    {"time_for_children", "a time namespace for its children"},
    {"user", "a user namespace"},
    {"uts", "a UTS namespace (host and domain name)"},
};

std::string NsRefusal(const NsKind& k, std::string_view link, std::string_view other) {
  if (k.name.ends_with("_for_children"))
    return "has " + std::string(k.what) + " other than " + std::string(other) + " (" + std::string(k.name) + ": " +
           std::string(link) + ", set by unshare or setns); restoring namespaces is not supported yet";
  return "lives in " + std::string(k.what) + " other than " + std::string(other) + " (" + std::string(link) +
         "); restoring namespaces is not supported yet";
}

}  // namespace

void ClassifyNamespaces(const std::map<std::string, std::string>& links, const std::string& subject,
                        const Baseline& cryo, const std::map<std::string, std::string>* leader, Report* report) {
  for (const auto& [name, link] : links) {
    const NsKind* kind = nullptr;
    for (const NsKind& k : kNamespaces)
      if (k.name == name) kind = &k;
    if (!kind) {
      report->Add(subject, "ns", name, link, Verdict::kRefused,
                  "has a namespace cryo does not know (/proc/PID/ns/" + name + " -> " + link + ")");
      continue;
    }
    const std::map<std::string, std::string>& other = leader ? *leader : cryo.ns;
    auto it = other.find(name);
    // Dumped from inside the tree's own PID namespace (ns/tree_pidns.h):
    // that namespace and its mount namespace are made again by --pidns new.
    const bool own_pidns = !leader && ns::DumpingInTreePidns();
    if (it != other.end() && it->second == link) {
      // Dumped from inside the tree's own mount namespace (ns/tree_mntns.h):
      // made again by the restore with its mounts.
      const bool remade = (own_pidns && kind->name.starts_with("pid")) ||
                          (!leader && kind->name == "mnt" && ns::DumpingInTreeMountNs());
      report->Tally(subject, "ns", kind->name, leader || remade ? Verdict::kRestored : Verdict::kInherited);
      continue;
    }
    if (own_pidns && kind->name == "mnt") {
      report->Add(subject, "ns", name, link, Verdict::kRestored,
                  "the mount namespace of its own PID namespace: checked to be cryo's mounts with its own /proc, "
                  "made again by the restore with --pidns new");
      continue;
    }
    if (!leader && (kind->name == "ipc" || kind->name == "uts" || kind->name == "net")) {
      // The tree's own: restored as a fresh namespace (ns/namespaces.cc,
      // which refuses a tree in several of them or one shared outside it).
      report->Add(subject, "ns", name, link, Verdict::kRestored,
                  "its own " + std::string(kind->what) + ": its content dumped and restored into a fresh one");
      continue;
    }
    if (!leader && kind->name == "cgroup") {
      // The tree's own: its root cgroups dumped, a fresh one unshared there
      // by the root's helper (ns/cgroup_ns.cc, which refuses one shared
      // outside the tree).
      report->Add(subject, "ns", name, link, Verdict::kRestored,
                  "its own cgroup namespace: its root cgroups dumped and a fresh one made there");
      continue;
    }
    if (!leader && kind->name == "user") {
      // The tree's own: its maps dumped and a fresh one made first at
      // restore, owning the tree's other namespaces (ns/user_ns.cc, which
      // refuses a nested one, one shared outside the tree, unmapped ids).
      report->Add(subject, "ns", name, link, Verdict::kRestored,
                  "its own user namespace: its uid/gid maps dumped and restored into a fresh one");
      continue;
    }
    if (!leader && kind->name.starts_with("time")) {
      // Its offsets restored into a fresh one; the shapes a restore can
      // rebuild are checked with the whole tree (ns/time_ns.h).
      report->Add(subject, "ns", name, link, Verdict::kRestored,
                  "its own " + std::string(kind->what) + ": its clock offsets dumped and restored into a fresh one");
      continue;
    }
    report->Add(subject, "ns", name, link, Verdict::kRefused,
                NsRefusal(*kind, link, leader ? "its process leader's" : "cryo's"));
  }
}

void ClassifyCgroups(std::string_view text, const std::string& subject, const Baseline& cryo,
                     const std::string* leader, Report* report) {
  if (leader) {
    if (*leader == text) return report->Tally(subject, "cgroup", "membership", Verdict::kRestored);
    return report->Add(subject, "cgroup", "membership", std::string(Trim(text)), Verdict::kRefused,
                       "is in other cgroups than its process leader (cgroup v1 or threaded v2 placement), which is "
                       "not restored yet");
  }
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    // "hierarchy-id:controllers:path"; the path may contain ':'.
    const size_t c1 = line.find(':'), c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) {
      report->Add(subject, "cgroup", std::string(line), "", Verdict::kRefused,
                  "has a cgroup line cryo cannot read (\"" + std::string(line) + "\")");
      continue;
    }
    const std::string_view hierarchy = line.substr(0, c2), path = line.substr(c2 + 1);
    std::string mine;
    for (const std::string& l : cryo.cgroup)
      if (std::string_view(l).substr(0, c2 + 1) == line.substr(0, c2 + 1)) mine = l.substr(c2 + 1);
    if (mine == path) {
      report->Add(subject, "cgroup", std::string(hierarchy), std::string(path), Verdict::kInherited,
                  "cryo's own cgroup; inherited by the restored process");
      continue;
    }
    const std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string which = line.substr(0, c1) == "0" && controllers.empty()
                                  ? std::string("the cgroup v2 hierarchy")
                                  : "the cgroup v1 hierarchy " + std::string(controllers);
    // Recorded relative to cryo's and moved back at restore (src/cgroup/),
    // which refuses what it cannot place (outside cryo's cgroup namespace, a
    // hierarchy not mounted here).
    report->Add(subject, "cgroup", std::string(hierarchy), std::string(path), Verdict::kRestored,
                "in cgroup " + std::string(path) + " of " + which + ", cryo in " +
                    (mine.empty() ? std::string("none") : mine) + ": moved there again by the restore");
  }
}

}  // namespace cryo::audit
