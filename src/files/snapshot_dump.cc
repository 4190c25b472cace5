#include "files/snapshot_dump.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <map>
#include <set>

#include "base/interrupt.h"
#include "base/log.h"
#include "base/size_format.h"
#include "base/unique_fd.h"
#include "files/file_facts.h"
#include "files/unlinked_dump.h"
#include "image/format.h"
#include "image/parent_chain.h"

namespace cryo {

namespace {

int64_t Ns(const struct timespec& t) { return t.tv_sec * 1000000000ll + t.tv_nsec; }

const char* KindText(mode_t mode) {
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISFIFO(mode)) return "a FIFO";
  return "of an unknown file type";
}

// File systems whose files the kernel makes at each read: nothing to carry.
const char* PseudoFs(long type) {
  switch (type) {
    case PROC_SUPER_MAGIC: return "proc";
    case SYSFS_MAGIC: return "sysfs";
    case CGROUP_SUPER_MAGIC: return "cgroup";
    case CGROUP2_SUPER_MAGIC: return "cgroup2";
    case DEBUGFS_MAGIC: return "debugfs";
    case TRACEFS_MAGIC: return "tracefs";
    case SECURITYFS_MAGIC: return "securityfs";
    case BPF_FS_MAGIC: return "bpf";
    case DEVPTS_SUPER_MAGIC: return "devpts";
    default: return nullptr;
  }
}

// The absolute path of `path` with its directories' symbolic links resolved
// (the last component stays as it is: a named link is carried as a link).
Result<std::string> Absolute(const std::string& path) {
  if (path.empty()) return Status::Error("--snapshot-path: an empty path");
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  const std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  char resolved[PATH_MAX];
  if (!::realpath(dir.c_str(), resolved)) return Status::FromErrno("--snapshot-path " + path + ": its directory " + dir);
  if (base.empty() || base == "/") return std::string("/");
  if (base == "." || base == "..") {
    if (!::realpath(p.c_str(), resolved)) return Status::FromErrno("--snapshot-path " + path);
    return std::string(resolved);
  }
  const std::string d = resolved;
  return (d == "/" ? "" : d) + "/" + base;
}

Status RefuseKind(const std::string& root, const std::string& path, mode_t mode) {
  return Status::Error("--snapshot-path " + root + ": " + path + " is " + KindText(mode) +
                       ": cryo carries regular files, directories and symbolic links only; leave it out (name the "
                       "files beside it one by one)");
}

Status ReadLink(const std::string& path, std::string* target) {
  std::vector<char> buf(PATH_MAX + 1);
  const ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) return Status::FromErrno("readlink " + path);
  if (static_cast<size_t>(n) >= buf.size()) return Status::Error("readlink " + path + ": target too long");
  target->assign(buf.data(), static_cast<size_t>(n));
  return Status::Ok();
}

// Why `path` (lstat `st`) cannot be carried as it is, "" if it can.
// `links_ok`: a file with several names may be carried (the walk then checks
// that every name is in the snapshot, LinkGroups).
std::string NotCarried(const std::string& path, const struct stat& st, bool links_ok) {
  // The restore writes a file under a new name and renames it over the old:
  // another name of the same inode would keep the old content.
  if (!links_ok && S_ISREG(st.st_mode) && st.st_nlink > 1)
    return " has " + std::to_string(st.st_nlink) + " hard links, which are not carried as links (the restore would "
           "split them)";
  // Inode flags (chattr(1)) are not carried: a file that only grows or cannot
  // change would come back as an ordinary one.
  struct statx sx{};
  if (!S_ISLNK(st.st_mode) && ::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, 0, &sx) == 0 &&
      (sx.stx_attributes & sx.stx_attributes_mask & (STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND)))
    return " is immutable or append-only (chattr +i/+a), which is not carried";
  return "";
}

// How one root is walked: the option named in messages, and whether
// character devices 0:0 are overlayfs whiteouts (an overlay's upper dir).
struct WalkRules {
  std::string option = "--snapshot-path";
  bool whiteouts = false;
};

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

// Walks `path` (lstat `st`) into `out`; `root` and `root_dev` for messages
// and the file system not to leave; `named`: other roots, walked on their own.
Status Walk(const WalkRules& rules, const std::string& root, dev_t root_dev, const std::string& path,
            const struct stat& st, const std::set<std::string>& named, std::vector<SnapshotItem>* out) {
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  SnapshotItem item{path, st, path == root, {}, {}};
  const std::string opt = rules.option + " " + root + ": ";
  if (S_ISLNK(st.st_mode)) CRYO_RETURN_IF_ERROR(ReadLink(path, &item.link_target));
  else if (rules.whiteouts && IsWhiteout(st)) {
  } else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    if (rules.option != "--snapshot-path")
      return Status::Error(opt + path + " is " + KindText(st.st_mode) +
                           ": cryo carries regular files, directories, symbolic links and overlay whiteouts only; "
                           "remove it from the tree before the dump");
    return RefuseKind(root, path, st.st_mode);
  }
  if (st.st_dev != root_dev)
    return Status::Error(opt + path +
                         " is a mount point of another file system; cryo does not cross file systems: name it with "
                         "a --snapshot-path of its own");
  const std::string why = NotCarried(path, st, true);
  if (!why.empty()) return Status::Error(opt + path + why);
  out->push_back(item);
  if (!S_ISDIR(st.st_mode)) return Status::Ok();
  DIR* d = ::opendir(path.c_str());
  if (!d) return Status::FromErrno(opt + "opendir " + path);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  const int err = errno;
  ::closedir(d);
  if (err) return Status::Errno(err, opt + "readdir " + path);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string child = (path == "/" ? "" : path) + "/" + n;
    if (named.count(child)) continue;  // its own root
    struct stat cst;
    if (::lstat(child.c_str(), &cst) != 0) return Status::FromErrno(opt + "lstat " + child);
    CRYO_RETURN_IF_ERROR(Walk(rules, root, root_dev, child, cst, named, out));
  }
  return Status::Ok();
}

Status ReadXattrs(const std::string& path, image::SnapshotEntry* e) {
  std::vector<char> names(4096);
  ssize_t n;
  while ((n = ::llistxattr(path.c_str(), names.data(), names.size())) < 0 && errno == ERANGE) names.resize(names.size() * 4);
  if (n < 0) {
    if (errno == ENOTSUP) return Status::Ok();
    return Status::FromErrno("llistxattr " + path);
  }
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    const std::string name(names.data() + at);
    at += name.size() + 1;
    std::vector<char> value(256);
    ssize_t v;
    while ((v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size())) < 0 && errno == ERANGE)
      value.resize(value.size() * 4);
    if (v < 0) return Status::FromErrno("lgetxattr " + path + " " + name);
    image::SnapshotXattr* x = e->add_xattrs();
    x->set_name(name);
    x->set_value(value.data(), static_cast<size_t>(v));
  }
  return Status::Ok();
}

// The names of one file (regular, st_nlink > 1) are carried as links: the
// first in path order with the content, the others naming it (link_of), so
// that the restore makes the file once and link(2)s the rest. Every name must
// be in the snapshot: st_nlink counts the names anywhere in the file system
// (a directory not carried, one hidden under a mount point, another
// --snapshot-path's tree of the same file system counts only if carried), and
// the restore renames a new inode over the names it carries, so a name it does
// not carry would keep the old inode, split from the others. That is refused.
Status LinkGroups(std::map<std::string, SnapshotItem>* by_path) {
  std::map<std::pair<dev_t, ino_t>, std::vector<SnapshotItem*>> groups;
  for (auto& [path, item] : *by_path)
    if (S_ISREG(item.st.st_mode) && item.st.st_nlink > 1) groups[{item.st.st_dev, item.st.st_ino}].push_back(&item);
  for (auto& [key, names] : groups) {
    const nlink_t nlink = names.front()->st.st_nlink;
    if (names.size() != nlink) {
      std::string list;
      for (const SnapshotItem* i : names) list += (list.empty() ? "" : ", ") + i->path;
      return Status::Error("--snapshot-path: " + names.front()->path + " has " + std::to_string(nlink) +
                           " hard links, of which the snapshot holds " + std::to_string(names.size()) + " (" + list +
                           "): the others are elsewhere in its file system, and the restore would split them from "
                           "these; carry the directories that hold them too, or remove those names");
    }
    // by_path is in path order: the first name carries the content.
    for (size_t n = 1; n < names.size(); ++n) names[n]->link_of = names.front()->path;
  }
  return Status::Ok();
}

bool SameAttrs(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && (a.st_mode & S_IFMT) == (b.st_mode & S_IFMT);
}

}  // namespace

Result<SnapshotPlan> PlanSnapshot(const std::vector<std::string>& paths, const std::set<std::string>& mount_points,
                                  const std::string& fs_root) {
  SnapshotPlan plan;
  std::set<std::string> named = mount_points;
  std::vector<std::string> roots;
  std::map<std::string, WalkRules> rules;
  if (!fs_root.empty()) {
    CRYO_ASSIGN_OR_RETURN(FsRootSource src, DescribeFsRoot(fs_root));
    named.insert(src.walk_root);
    roots.push_back(src.walk_root);
    rules[src.walk_root] = {"--fs-root", src.whiteouts};
    plan.has_fs_root = true;
    plan.fs_root = std::move(src.record);
  }
  for (const std::string& p : paths) {
    CRYO_ASSIGN_OR_RETURN(std::string abs, Absolute(p));
    if (std::find(roots.begin(), roots.end(), abs) == roots.end()) {
      named.insert(abs);
      roots.push_back(abs);
    }
  }
  std::map<std::string, SnapshotItem> by_path;
  for (const std::string& root : roots) {
    struct stat st;
    if (::lstat(root.c_str(), &st) != 0) return Status::FromErrno("--snapshot-path " + root);
    struct statfs fs;
    if (::statfs(root.c_str(), &fs) == 0 && PseudoFs(fs.f_type))
      return Status::Error(std::string("--snapshot-path ") + root + ": on a " + PseudoFs(fs.f_type) +
                           " file system, whose files the kernel makes: there is nothing to carry");
    if (root == "/") return Status::Error("--snapshot-path /: the whole root file system is not carried; name the "
                                          "directories the program needs");
    std::vector<SnapshotItem> items;
    CRYO_RETURN_IF_ERROR(Walk(rules[root], root, st.st_dev, root, st, named, &items));
    for (SnapshotItem& i : items) by_path.emplace(i.path, std::move(i));
  }
  CRYO_RETURN_IF_ERROR(LinkGroups(&by_path));
  for (auto& [path, item] : by_path) plan.items.push_back(std::move(item));
  return plan;
}

Status AddOpenFiles(const std::vector<const image::FdTable*>& tables, SnapshotPlan* plan) {
  std::set<std::string> have;
  for (const SnapshotItem& i : plan->items) have.insert(i.path);
  std::vector<SnapshotItem> added;
  for (const image::FdTable* t : tables)
    for (const image::Fd& f : t->fds()) {
      if (f.kind() != image::FD_REGULAR || !f.has_file() || f.file().path().empty() || f.file().path()[0] != '/')
        continue;
      const std::string& path = f.file().path();
      if (have.count(path)) continue;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != f.file().ino()) continue;
      struct statfs fs;
      if (::statfs(path.c_str(), &fs) != 0 || PseudoFs(fs.f_type)) continue;
      // Left to the changed-file check, like every file not carried.
      const std::string why = NotCarried(path, st, false);
      if (!why.empty()) {
        LOG_INFO("--snapshot-open-files: %s%s; the restore checks it like any file not carried", path.c_str(),
                 why.c_str());
        continue;
      }
      have.insert(path);
      added.push_back({path, st, true, {}, {}});
    }
  for (SnapshotItem& i : added) plan->items.push_back(std::move(i));
  std::sort(plan->items.begin(), plan->items.end(),
            [](const SnapshotItem& a, const SnapshotItem& b) { return a.path < b.path; });
  return Status::Ok();
}

Status DumpSnapshot(const SnapshotPlan& plan, const image::SnapshotTable* parent, image::ImageWriter* writer,
                    image::SnapshotTable* table, std::set<std::string>* features) {
  if (plan.empty()) return Status::Ok();
  features->insert("snapshot-files");
  if (plan.has_fs_root) {
    features->insert("fs-root");
    *table->mutable_fs_root() = plan.fs_root;
  }
  std::map<std::string, const image::SnapshotEntry*> before;
  if (parent)
    for (const image::SnapshotEntry& e : parent->entries())
      if (e.kind() == image::SNAPSHOT_REGULAR && e.link_of().empty()) before.emplace(e.path(), &e);
  CRYO_ASSIGN_OR_RETURN(auto data, writer->CreatePageFile(image::SnapshotDataName()));
  uint64_t off = image::kPageDataOffset, stored = 0, reused = 0;
  for (const SnapshotItem& item : plan.items) {
    CRYO_RETURN_IF_ERROR(CheckInterrupt());
    const std::string& path = item.path;
    image::SnapshotEntry* e = table->add_entries();
    e->set_path(path);
    e->set_root(item.root);
    UniqueFd fd;
    struct stat st;
    if (S_ISLNK(item.st.st_mode)) {
      if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno("snapshot: lstat " + path);
      e->set_kind(image::SNAPSHOT_SYMLINK);
      e->set_link_target(item.link_target);
    } else if (IsWhiteout(item.st)) {
      if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno("snapshot: lstat " + path);
      if (!IsWhiteout(st)) return Status::Error("snapshot: " + path + " was replaced while the dump ran; dump again");
      e->set_kind(image::SNAPSHOT_WHITEOUT);
    } else {
      const int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (S_ISDIR(item.st.st_mode) ? O_DIRECTORY : 0);
      int raw = ::open(path.c_str(), flags | O_NOATIME);
      if (raw < 0 && errno == EPERM) raw = ::open(path.c_str(), flags);
      if (raw < 0) return Status::FromErrno("snapshot: open " + path);
      fd.reset(raw);
      if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("snapshot: stat " + path);
      e->set_kind(S_ISDIR(st.st_mode) ? image::SNAPSHOT_DIRECTORY : image::SNAPSHOT_REGULAR);
    }
    if (!SameAttrs(st, item.st))
      return Status::Error("snapshot: " + path + " was replaced while the dump ran; dump again");
    e->set_mode(st.st_mode & 07777);
    e->set_uid(st.st_uid);
    e->set_gid(st.st_gid);
    e->set_atime_ns(Ns(st.st_atim));
    e->set_mtime_ns(Ns(st.st_mtim));
    if (e->kind() == image::SNAPSHOT_REGULAR && st.st_nlink != item.st.st_nlink)
      return Status::Error("snapshot: " + path + " was linked or unlinked while the dump ran (" +
                           std::to_string(item.st.st_nlink) + " names, now " + std::to_string(st.st_nlink) +
                           "); dump again");
    if (!item.link_of.empty()) {
      // Another name of a file carried before (the same inode: SameAttrs
      // against the walk's lstat, which grouped it): no content of its own.
      features->insert("snapshot-hardlinks");
      e->set_link_of(item.link_of);
      continue;
    }
    CRYO_RETURN_IF_ERROR(ReadXattrs(path, e));
    if (e->kind() != image::SNAPSHOT_REGULAR) continue;
    e->set_size(static_cast<uint64_t>(st.st_size));
    CRYO_ASSIGN_OR_RETURN(const uint64_t hash, HashFileContent(fd.get(), "the snapshot file " + path));
    e->set_content_xxh3(hash);
    auto it = before.find(path);
    if (it != before.end() && it->second->size() == e->size() && it->second->mtime_ns() == e->mtime_ns() &&
        it->second->content_xxh3() == hash && it->second->depth() < image::kMaxParentDepth) {
      // Unchanged since the parent: its content stays where the parent has it.
      *e->mutable_extents() = it->second->extents();
      e->set_depth(it->second->depth() + 1);
      reused += e->size();
      continue;
    }
    CRYO_RETURN_IF_ERROR(StreamFileData(fd.get(), e->size(), "the snapshot file " + path, data.get(), &off,
                                        e->mutable_extents()));
    stored += e->size();
  }
  LOG_INFO("snapshot: %d entries, %s stored, %s unchanged since the parent image", table->entries_size(),
           FormatSize(stored).c_str(), FormatSize(reused).c_str());
  table->set_data_size(off - image::kPageDataOffset);
  return writer->FinishPageFile(std::move(data), off - image::kPageDataOffset);
}

}  // namespace cryo
