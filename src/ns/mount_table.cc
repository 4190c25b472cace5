#include "ns/mount_table.h"

#include <sys/mount.h>

#include <algorithm>
#include <map>

#include "base/file_util.h"
#include "proc/proc.h"

namespace cryo::ns {

namespace {

int GroupId(std::string_view tag, std::string_view prefix) {
  if (!tag.starts_with(prefix)) return 0;
  int n = 0;
  for (char c : tag.substr(prefix.size())) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + (c - '0');
  }
  return n;
}

int ToInt(std::string_view s) {
  int n = 0;
  for (char c : s)
    if (c >= '0' && c <= '9') n = n * 10 + (c - '0');
  return n;
}

// What makes two lines the same mount of a copied namespace: ids, devices of
// proc instances and propagation tags differ between copies.
std::string Key(const MountLine& m) {
  return m.fstype + '\0' + m.source + '\0' + m.point + '\0' + m.root + '\0' + m.super;
}

std::string Join(const std::string& dir, std::string_view rest) {
  if (rest.empty() || rest == "/") return dir;
  return (dir == "/" ? "" : dir) + std::string(rest);
}

// The superblock options to give mount(2) again: all but rw/ro (per-mount
// flags, set apart) and seclabel (shown, not accepted).
std::string MountData(const std::string& super) {
  std::string out;
  size_t start = 0;
  while (start <= super.size()) {
    size_t comma = super.find(',', start);
    if (comma == std::string::npos) comma = super.size();
    const std::string opt = super.substr(start, comma - start);
    if (!opt.empty() && opt != "rw" && opt != "ro" && opt != "seclabel") out += (out.empty() ? "" : ",") + opt;
    start = comma + 1;
  }
  return out;
}

image::MountPropagation Propagation(bool slave, bool shared) {
  if (slave) return shared ? image::PROPAGATION_SLAVE_SHARED : image::PROPAGATION_SLAVE;
  return shared ? image::PROPAGATION_SHARED : image::PROPAGATION_PRIVATE;
}

}  // namespace

bool PathUnder(std::string_view path, std::string_view dir) {
  if (dir == "/") return !path.empty() && path[0] == '/';
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

std::string DescribeMount(const MountLine& m) { return m.point + " (" + m.fstype + " " + m.source + ")"; }

Result<std::vector<MountLine>> ParseMountLines(std::string_view text) {
  std::vector<MountLine> out;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    const std::vector<std::string_view> w = SplitWords(line);
    size_t dash = 6;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (w.size() < 7 || dash + 3 >= w.size())
      return Status::Error("malformed mountinfo line \"" + std::string(line) + "\"");
    MountLine m;
    m.id = ToInt(w[0]);
    m.parent = ToInt(w[1]);
    m.dev = std::string(w[2]);
    m.root = proc::UnescapeMountField(w[3]);
    m.point = proc::UnescapeMountField(w[4]);
    m.options = std::string(w[5]);
    for (size_t i = 6; i < dash; ++i) {
      if (int g = GroupId(w[i], "shared:")) m.shared = g;
      else if (int g2 = GroupId(w[i], "master:")) m.master = g2;
      else if (w[i] == "unbindable") m.unbindable = true;
      else if (!w[i].starts_with("propagate_from:")) m.other_tags.emplace_back(w[i]);
    }
    m.fstype = std::string(w[dash + 1]);
    m.source = proc::UnescapeMountField(w[dash + 2]);
    m.super = std::string(w[dash + 3]);
    out.push_back(std::move(m));
  }
  return out;
}

Result<unsigned> MountFlags(std::string_view options) {
  unsigned flags = 0;
  bool atime = false;
  size_t start = 0;
  while (start <= options.size()) {
    size_t comma = options.find(',', start);
    if (comma == std::string_view::npos) comma = options.size();
    const std::string_view o = options.substr(start, comma - start);
    start = comma + 1;
    if (o.empty() || o == "rw") continue;
    if (o == "ro") flags |= MS_RDONLY;
    else if (o == "nosuid") flags |= MS_NOSUID;
    else if (o == "nodev") flags |= MS_NODEV;
    else if (o == "noexec") flags |= MS_NOEXEC;
    else if (o == "nosymfollow") flags |= MS_NOSYMFOLLOW;
    else if (o == "noatime") flags |= MS_NOATIME, atime = true;
    else if (o == "relatime") flags |= MS_RELATIME, atime = true;
    else if (o == "nodiratime") flags |= MS_NODIRATIME;
    else
      return Status::Error("the mount option \"" + std::string(o) + "\" is not made again");
  }
  // No atime option shown: strictatime (mount(2) defaults to relatime).
  if (!atime) flags |= MS_STRICTATIME;
  return flags;
}

Result<image::MountNamespace> DiffMountTables(const std::vector<MountLine>& tree, const std::vector<MountLine>& ref,
                                              const std::string& subject, bool* changed) {
  *changed = false;
  image::MountNamespace out;
  std::multimap<std::string, size_t> unused;  // ref's mounts by key
  std::set<int> ref_groups;                    // peer groups the reference namespace takes part in
  for (size_t j = 0; j < ref.size(); ++j) {
    unused.emplace(Key(ref[j]), j);
    if (ref[j].shared) ref_groups.insert(ref[j].shared);
    if (ref[j].master) ref_groups.insert(ref[j].master);
  }
  std::set<int> first_of_group;  // the tree's own peer groups met so far
  std::vector<const MountLine*> inherited;  // the tree's copies of reference mounts
  auto refuse = [&](const MountLine& t, const std::string& why) {
    return Status::Error(subject + DescribeMount(t) + " " + why);
  };
  for (size_t i = 0; i < tree.size(); ++i) {
    const MountLine& t = tree[i];
    if (t.unbindable) return refuse(t, "is unbindable, which a restore does not make again");
    if (!t.other_tags.empty()) return refuse(t, "has the propagation tag " + t.other_tags.front() + " cryo does not know");
    if (t.shared && ref_groups.count(t.shared))
      return refuse(t, "shares peer group " + std::to_string(t.shared) + " with mounts outside the tree's namespace, "
                    "which a restore cannot join again (make it private or a slave: unshare --propagation private)");
    // A peer group of the namespace's own: made by its first mount; a later
    // one must be a bind of an earlier member (it joins the group).
    const bool later_peer = t.shared && !ref_groups.count(t.shared) && !first_of_group.insert(t.shared).second;
    auto refuse_peer = [&]() {
      return refuse(t, "is in peer group " + std::to_string(t.shared) + " with other mounts of the namespace, not as "
                    "a bind mount of one of them, which a restore does not make again");
    };
    auto flags = MountFlags(t.options);
    if (!flags.ok()) return refuse(t, "cannot be made again: " + flags.status().message());
    image::MountEntry e;
    e.set_mount_point(t.point);
    e.set_fstype(t.fstype);
    e.set_source(t.source);
    e.set_root(t.root);
    e.set_flags(*flags);
    auto range = unused.equal_range(Key(t));
    if (range.first != range.second) {  // a copy of a reference mount
      const MountLine& r = ref[range.first->second];
      unused.erase(range.first);
      inherited.push_back(&t);
      // unshare(CLONE_NEWNS) copies a shared mount into its peer group, and the
      // restore makes every copy a slave (MS_REC|MS_SLAVE) first, so that
      // nothing it mounts propagates out (mount_namespaces(7)).
      const int master = r.shared ? r.shared : r.master;
      if (t.master && t.master != master)
        return refuse(t, "is a slave of peer group " + std::to_string(t.master) + ", not of the group of cryo's "
                      "mount, which a restore does not make again");
      if (later_peer) return refuse_peer();
      e.set_action(image::MOUNT_INHERITED);
      e.set_propagation(Propagation(t.master != 0, t.shared != 0));
      CRYO_ASSIGN_OR_RETURN(unsigned ref_flags, MountFlags(r.options));
      e.set_remount(ref_flags != *flags);
      const image::MountPropagation as_copied = master ? image::PROPAGATION_SLAVE : image::PROPAGATION_PRIVATE;
      if (!e.remount() && e.propagation() == as_copied) continue;
      for (size_t k = i + 1; k < tree.size(); ++k)
        if (tree[k].point == t.point && unused.count(Key(tree[k])))
          return refuse(t, "is remounted or its propagation changed, under another mount on the same point: a "
                        "restore does not reach it");
      *out.add_mounts() = std::move(e);
      continue;
    }
    // Added in the tree's namespace.
    if (t.master && !ref_groups.count(t.master))
      return refuse(t, "is a slave of peer group " + std::to_string(t.master) + " inside the namespace, which a "
                    "restore does not make again");
    e.set_propagation(Propagation(t.master != 0, t.shared != 0));
    if (t.root.ends_with("//deleted"))
      return refuse(t, "binds a directory or file that was deleted: it cannot be made again");
    // The same file system shown by an earlier mount: a bind mount of the
    // path that mount gives it (the latest such mount that nothing after it
    // covers, as the restore's mounts are made in this order).
    bool same_fs = false;
    std::string source;
    int source_group = 0;
    for (size_t k = i; k-- > 0 && source.empty();) {
      const MountLine& c = tree[k];
      if (c.dev != t.dev) continue;
      same_fs = true;
      if (!PathUnder(t.root, c.root)) continue;
      const std::string path = Join(c.point, std::string_view(t.root).substr(c.root == "/" ? 0 : c.root.size()));
      bool covered = false;
      for (size_t m = k + 1; m < i && !covered; ++m) covered = PathUnder(path, tree[m].point);
      if (!covered) source = path, source_group = c.shared;
    }
    for (const MountLine& r : ref) same_fs = same_fs || r.dev == t.dev;
    if (later_peer && (source.empty() || source_group != t.shared)) return refuse_peer();
    if (!source.empty()) {
      e.set_action(image::MOUNT_BIND);
      e.set_source(source);
      e.set_joins_source_group(later_peer);
    } else if (same_fs) {
      return refuse(t, "binds " + t.root + " of a file system no mount of the namespace before it shows: it cannot "
                    "be made again");
    } else if (t.fstype == "tmpfs") {
      e.set_action(image::MOUNT_TMPFS);
      e.set_data(MountData(t.super));
    } else if (t.fstype == "proc") {
      e.set_action(image::MOUNT_PROC);
      e.set_data(MountData(t.super));
    } else if (t.fstype == "sysfs") {
      e.set_action(image::MOUNT_SYSFS);
    } else if (t.fstype == "mqueue") {
      e.set_action(image::MOUNT_MQUEUE);
    } else if (t.fstype == "devpts") {
      // Every devpts mount is an instance of its own (since 4.7, devpts.rst);
      // its ptys are the tree's, made again by the tty restore.
      e.set_action(image::MOUNT_DEVPTS);
      e.set_data(MountData(t.super));
    } else {
      return refuse(t, "cannot be made again (cryo makes tmpfs, proc, sysfs, mqueue and devpts mounts of the "
                    "namespace's own, and bind mounts of what cryo's mounts show)");
    }
    *out.add_mounts() = std::move(e);
  }
  // What is left of the reference's mounts is not in the tree's table: the
  // tree unmounted it, or it was mounted since the tree's namespace was made
  // (a private copy does not receive it). The restore unmounts it in the copy
  // it starts from, unless a mount the tree kept would go with it.
  std::vector<size_t> absent;
  for (const auto& [key, j] : unused) absent.push_back(j);
  std::sort(absent.begin(), absent.end());
  for (size_t j : absent) {
    const MountLine& r = ref[j];
    // A namespace file bound by `ip netns add` in cryo's namespace since the
    // tree's was made: the host's, nothing of the tree's.
    if (r.fstype == "nsfs") continue;
    for (const MountLine* kept : inherited)
      if (PathUnder(kept->point, r.point))
        return Status::Error(subject + DescribeMount(r) + ", a mount of cryo's namespace, is not in the tree's, but " +
                             DescribeMount(*kept) + ", on or below it, is: a restore cannot unmount the one without "
                             "the other");
    image::MountEntry* e = out.add_absent();
    e->set_mount_point(r.point);
    e->set_fstype(r.fstype);
    e->set_source(r.source);
    e->set_root(r.root);
  }
  *changed = out.mounts_size() > 0 || out.absent_size() > 0;
  return out;
}

}  // namespace cryo::ns
