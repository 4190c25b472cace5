#include "files/snapshot_restore.h"

#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "base/log.h"
#include "base/unique_fd.h"
#include "files/file_facts.h"
#include "files/unlinked_restore.h"
#include "image/format.h"
#include "image/referenced_files.h"

namespace cryo {

namespace {

int64_t Ns(const struct timespec& t) { return t.tv_sec * 1000000000ll + t.tv_nsec; }

struct timespec Ts(int64_t ns) {
  struct timespec t;
  t.tv_sec = ns / 1000000000ll;
  t.tv_nsec = ns % 1000000000ll;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000ll;
    --t.tv_sec;
  }
  return t;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

int RemoveEntry(const char* path, const struct stat*, int flag, struct FTW*) {
  return flag == FTW_DP ? ::rmdir(path) : ::unlink(path);
}

// rm -rf: a backup that is a whole directory tree.
void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  int rc = S_ISDIR(st.st_mode) ? ::nftw(path.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) : ::unlink(path.c_str());
  if (rc != 0) LOG_WARN("snapshot: could not remove %s: %s", path.c_str(), std::strerror(errno));
}

// Owner, mode (not for links), xattrs, times (last: the others change ctime only).
Status SetAttrs(const std::string& path, const image::SnapshotEntry& e) {
  if (::lchown(path.c_str(), e.uid(), e.gid()) != 0) return Status::FromErrno("snapshot: chown " + path);
  if (e.kind() != image::SNAPSHOT_SYMLINK && ::chmod(path.c_str(), e.mode()) != 0)
    return Status::FromErrno("snapshot: chmod " + path);
  for (const image::SnapshotXattr& x : e.xattrs())
    if (::lsetxattr(path.c_str(), x.name().c_str(), x.value().data(), x.value().size(), 0) != 0)
      return Status::FromErrno("snapshot: set xattr " + x.name() + " of " + path);
  const struct timespec times[2] = {Ts(e.atime_ns()), Ts(e.mtime_ns())};
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
    return Status::FromErrno("snapshot: set the times of " + path);
  return Status::Ok();
}

// Whether the regular file at `path` (lstat `st`) is already the entry's.
bool SameFile(const std::string& path, const struct stat& st, const image::SnapshotEntry& e) {
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != e.size() || Ns(st.st_mtim) != e.mtime_ns() ||
      (st.st_mode & 07777) != e.mode() || st.st_uid != e.uid() || st.st_gid != e.gid())
    return false;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return false;
  auto h = HashFileContent(fd.get(), path);
  return h.ok() && *h == e.content_xxh3();
}

}  // namespace

std::set<std::string> SnapshotPaths(const image::LoadedImage& img) {
  std::set<std::string> out;
  for (const image::SnapshotEntry& e : img.snapshot.entries()) out.insert(e.path());
  if (img.snapshot.has_fs_root()) {
    const std::string& dir = img.snapshot.fs_root().path();
    for (const image::ReferencedFile& f : image::ReferencedFiles(img))
      if (f.path == dir || (f.path.size() > dir.size() && f.path.compare(0, dir.size(), dir) == 0 &&
                            f.path[dir.size()] == '/'))
        out.insert(f.path);
  }
  return out;
}

std::string SnapshotRestore::TempName(const std::string& path, const char* kind) {
  const std::string name = ".cryo-" + std::string(kind) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter_);
  // An overlay's upper dir is mounted again before the restore succeeds:
  // what it replaced waits in the work dir (the same file system), unseen.
  if (overlay_ && std::string(kind) == "old" && path.compare(0, overlay_->upper_dir().size() + 1,
                                                             overlay_->upper_dir() + "/") == 0)
    return overlay_->work_dir() + "/" + name;
  return Parent(path) + (Parent(path) == "/" ? "" : "/") + name;
}

Status SnapshotRestore::Publish(const std::string& temp, const std::string& path, bool exists) {
  if (exists) {
    const std::string backup = TempName(path, "old");
    if (::rename(path.c_str(), backup.c_str()) != 0) {
      Status s = Status::FromErrno("snapshot: moving " + path + " aside");
      ::unlink(temp.c_str());
      return s;
    }
    undo_.push_back({Op::kReplaced, path, backup});
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    Status s = Status::FromErrno("snapshot: renaming " + temp + " to " + path);
    ::unlink(temp.c_str());
    return s;
  }
  if (!exists) undo_.push_back({Op::kCreated, path, {}});
  ++written_;
  return Status::Ok();
}

// A directory kept in place keeps its xattrs: one the dump did not see goes
// (an overlay's trusted.overlay.opaque set since would hide the lower dirs).
Status SnapshotRestore::DropOtherXattrs(const image::SnapshotEntry& e) {
  const std::string& path = e.path();
  std::vector<char> names(4096);
  ssize_t n;
  while ((n = ::llistxattr(path.c_str(), names.data(), names.size())) < 0 && errno == ERANGE)
    names.resize(names.size() * 4);
  if (n < 0) return errno == ENOTSUP ? Status::Ok() : Status::FromErrno("snapshot: llistxattr " + path);
  std::set<std::string> keep;
  for (const image::SnapshotXattr& x : e.xattrs()) keep.insert(x.name());
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    const std::string name(names.data() + at);
    at += name.size() + 1;
    if (keep.count(name)) continue;
    std::vector<char> value(256);
    ssize_t v;
    while ((v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size())) < 0 && errno == ERANGE)
      value.resize(value.size() * 4);
    if (v < 0) return Status::FromErrno("snapshot: lgetxattr " + path + " " + name);
    if (::lremovexattr(path.c_str(), name.c_str()) != 0)
      return Status::FromErrno("snapshot: removing the xattr " + name + " of " + path);
    Undo u{Op::kXattr, path, {}, {}};
    u.name = name;
    u.value.assign(value.data(), static_cast<size_t>(v));
    undo_.push_back(std::move(u));
  }
  return Status::Ok();
}

Status SnapshotRestore::PutDirectory(const image::SnapshotEntry& e, const std::set<std::string>& children) {
  const std::string& path = e.path();
  struct stat st;
  const bool exists = ::lstat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    undo_.push_back({Op::kAttrs, path, {}, st});
  } else {
    if (exists) {
      const std::string backup = TempName(path, "old");
      if (::rename(path.c_str(), backup.c_str()) != 0) return Status::FromErrno("snapshot: moving " + path + " aside");
      undo_.push_back({Op::kMovedAway, path, backup});
    }
    if (::mkdir(path.c_str(), 0700) != 0) return Status::FromErrno("snapshot: mkdir " + path);
    undo_.push_back({Op::kCreated, path, {}});
    ++written_;
    return Status::Ok();
  }
  // Put back exactly: what was made in it since the dump moves away.
  DIR* d = ::opendir(path.c_str());
  if (!d) return Status::FromErrno("snapshot: opendir " + path);
  std::vector<std::string> extra;
  while (struct dirent* de = ::readdir(d)) {
    const std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    const std::string child = (path == "/" ? "" : path) + "/" + n;
    if (!children.count(child)) extra.push_back(child);
  }
  ::closedir(d);
  for (const std::string& x : extra) {
    const std::string backup = TempName(x, "old");
    if (::rename(x.c_str(), backup.c_str()) != 0) return Status::FromErrno("snapshot: moving " + x + " away");
    undo_.push_back({Op::kMovedAway, x, backup});
  }
  return Status::Ok();
}

Status SnapshotRestore::Put(const image::LoadedImage& img, const image::SnapshotEntry& e,
                            const std::vector<int>& data_fds) {
  (void)img;
  const std::string& path = e.path();
  struct stat st;
  const bool exists = ::lstat(path.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) return Status::FromErrno("snapshot: lstat " + path);
  const std::string parent = Parent(path);
  struct stat pst;
  if (::stat(parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode))
    return Status::Error("snapshot: the directory " + parent + " of " + path +
                         " is missing; make it (or dump with --snapshot-path " + parent + ")");
  if (e.kind() == image::SNAPSHOT_SYMLINK) {
    if (exists && S_ISLNK(st.st_mode)) {
      std::vector<char> buf(e.link_target().size() + 2);
      const ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
      if (n >= 0 && std::string(buf.data(), static_cast<size_t>(n)) == e.link_target() && st.st_uid == e.uid() &&
          st.st_gid == e.gid() && Ns(st.st_mtim) == e.mtime_ns()) {
        ++unchanged_;
        return Status::Ok();
      }
    }
    const std::string temp = TempName(path, "new");
    if (::symlink(e.link_target().c_str(), temp.c_str()) != 0) return Status::FromErrno("snapshot: symlink " + temp);
    if (Status s = SetAttrs(temp, e); !s.ok()) {
      ::unlink(temp.c_str());
      return s;
    }
    return Publish(temp, path, exists);
  }
  if (e.kind() == image::SNAPSHOT_WHITEOUT) {
    if (exists && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0) && (st.st_mode & 07777) == e.mode() &&
        st.st_uid == e.uid() && st.st_gid == e.gid() && Ns(st.st_mtim) == e.mtime_ns()) {
      ++unchanged_;
      return Status::Ok();
    }
    const std::string temp = TempName(path, "new");
    // overlayfs.rst: "A whiteout is created as a character device with 0/0 device number".
    if (::mknod(temp.c_str(), S_IFCHR | 0600, makedev(0, 0)) != 0)
      return Status::FromErrno("snapshot: making the overlay whiteout " + temp);
    if (Status s = SetAttrs(temp, e); !s.ok()) {
      ::unlink(temp.c_str());
      return s;
    }
    return Publish(temp, path, exists);
  }
  if (!e.link_of().empty()) return PutLink(e, exists, st);
  // A file with other names is always made anew (a new inode they are linked
  // to): the one in place may have names the image does not hold.
  if (exists && !linked_.count(path) && SameFile(path, st, e)) {
    ++unchanged_;
    return Status::Ok();
  }
  const std::string temp = TempName(path, "new");
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno("snapshot: create " + temp + " for " + path);
  Status s = FillFileExtents(e.extents(), e.size(), data_fds.at(e.depth()), fd.get(), "the snapshot file " + path);
  fd.reset();
  if (s.ok()) s = SetAttrs(temp, e);
  if (!s.ok()) {
    ::unlink(temp.c_str());
    return s;
  }
  return Publish(temp, path, exists);
}

// Another name of a file put back just before (Apply checked that link_of
// names an earlier regular entry taken with this one): linked to it, so that
// the names share the inode as at the dump.
Status SnapshotRestore::PutLink(const image::SnapshotEntry& e, bool exists, const struct stat& st) {
  const std::string& path = e.path();
  struct stat target;
  if (::lstat(e.link_of().c_str(), &target) != 0) return Status::FromErrno("snapshot: lstat " + e.link_of());
  if (exists && st.st_dev == target.st_dev && st.st_ino == target.st_ino) {
    ++unchanged_;
    return Status::Ok();
  }
  const std::string temp = TempName(path, "new");
  if (::link(e.link_of().c_str(), temp.c_str()) != 0)
    return Status::FromErrno("snapshot: link " + e.link_of() + " to " + temp + " (for " + path + ")");
  return Publish(temp, path, exists);
}

Result<std::unique_ptr<SnapshotRestore>> SnapshotRestore::Apply(const image::LoadedImage& img,
                                                                const std::function<bool(const std::string&)>& take) {
  std::vector<const image::SnapshotEntry*> entries;
  for (const image::SnapshotEntry& e : img.snapshot.entries())
    if (!take || take(e.path())) entries.push_back(&e);
  std::unique_ptr<SnapshotRestore> r(new SnapshotRestore());
  if (entries.empty()) return r;
  const image::FsRoot& fs_root = img.snapshot.fs_root();
  if (fs_root.kind() == image::FS_ROOT_OVERLAY && (!take || take(fs_root.upper_dir()))) {
    CRYO_ASSIGN_OR_RETURN(r->overlay_, OverlayRemount::Unmount(fs_root));
  }
  // The data files by depth: this image's, then each ancestor's that is used.
  std::vector<UniqueFd> owned;
  std::vector<int> data_fds(img.ancestors.size() + 1, -1);
  std::vector<uint64_t> sizes(data_fds.size(), 0);
  CRYO_ASSIGN_OR_RETURN(UniqueFd own, image::OpenSnapshotDataFile(img));
  data_fds[0] = own.get();
  sizes[0] = image::kPageDataOffset + img.snapshot.data_size();
  owned.push_back(std::move(own));
  for (const image::SnapshotEntry* ep : entries) {
    const image::SnapshotEntry& e = *ep;
    const uint32_t d = e.depth();
    if (d == 0 || data_fds.at(d) >= 0) continue;
    const image::AncestorImage& a = img.ancestors.at(d - 1);
    image::FileHeader h;
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, image::OpenDataFileOf(a.dir, a.identity, image::SnapshotDataName(), &sizes[d], &h));
    data_fds[d] = fd.get();
    owned.push_back(std::move(fd));
  }
  for (const image::SnapshotEntry* ep : entries)
    for (const image::FileExtent& x : ep->extents())
      if (x.data_offset() < image::kPageDataOffset || x.data_offset() + x.length() > sizes.at(ep->depth()))
        return Status::Error("snapshot: the content of " + ep->path() + " lies outside the snapshot-data.img of " +
                             (ep->depth() ? img.ancestors.at(ep->depth() - 1).dir : img.dir) + " (corrupted)");
  // A link names a regular file with content that comes before it among the
  // entries put back (a table that says otherwise is corrupted).
  std::set<std::string> files;
  for (const image::SnapshotEntry* ep : entries) {
    if (ep->link_of().empty()) {
      if (ep->kind() == image::SNAPSHOT_REGULAR) files.insert(ep->path());
      continue;
    }
    if (ep->kind() != image::SNAPSHOT_REGULAR || ep->extents_size() || !files.count(ep->link_of()))
      return Status::Error("snapshot: " + ep->path() + " is a hard link to " + ep->link_of() +
                           ", which is not a file put back before it (corrupted)");
    r->linked_.insert(ep->link_of());
  }
  std::map<std::string, std::set<std::string>> children;
  for (const image::SnapshotEntry* e : entries) children[Parent(e->path())].insert(e->path());
  Status s;
  for (const image::SnapshotEntry* ep : entries) {
    const image::SnapshotEntry& e = *ep;
    s = e.kind() == image::SNAPSHOT_DIRECTORY ? r->PutDirectory(e, children[e.path()]) : r->Put(img, e, data_fds);
    if (!s.ok()) break;
  }
  // Directories' attributes once their entries are in place, deepest first.
  for (auto it = entries.rbegin(); s.ok() && it != entries.rend(); ++it)
    if ((*it)->kind() == image::SNAPSHOT_DIRECTORY) {
      s = r->DropOtherXattrs(**it);
      if (s.ok()) s = SetAttrs((*it)->path(), **it);
      auto& [path, times] = r->dir_times_.emplace_back();
      path = (*it)->path();
      times[0] = Ts((*it)->atime_ns());
      times[1] = Ts((*it)->mtime_ns());
    }
  if (s.ok() && r->overlay_) {
    s = r->overlay_->Mount();
  }
  if (!s.ok()) return s;  // r's destructor undoes
  LOG_INFO("snapshot: %zu files put back, %zu already as they were", r->written_, r->unchanged_);
  return r;
}

void SnapshotRestore::Rollback() {
  if (overlay_) overlay_->UnmountOurs();
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    const Undo& u = *it;
    switch (u.op) {
      case Op::kCreated:
        RemoveTree(u.path);
        break;
      case Op::kReplaced:
      case Op::kMovedAway:
        if (::rename(u.backup.c_str(), u.path.c_str()) != 0)
          LOG_WARN("snapshot: could not put %s back (it is %s): %s", u.path.c_str(), u.backup.c_str(),
                   std::strerror(errno));
        break;
      case Op::kXattr:
        if (::lsetxattr(u.path.c_str(), u.name.c_str(), u.value.data(), u.value.size(), 0) != 0)
          LOG_WARN("snapshot: could not set the xattr %s of %s again: %s", u.name.c_str(), u.path.c_str(),
                   std::strerror(errno));
        break;
      case Op::kAttrs: {
        (void)::lchown(u.path.c_str(), u.was.st_uid, u.was.st_gid);
        (void)::chmod(u.path.c_str(), u.was.st_mode & 07777);
        const struct timespec times[2] = {u.was.st_atim, u.was.st_mtim};
        (void)::utimensat(AT_FDCWD, u.path.c_str(), times, AT_SYMLINK_NOFOLLOW);
        break;
      }
    }
  }
  undo_.clear();
  if (overlay_) overlay_->RemountOld();
}

void SnapshotRestore::Keep() {
  for (const Undo& u : undo_)
    if (u.op == Op::kReplaced || u.op == Op::kMovedAway) RemoveTree(u.backup);
  undo_.clear();
  for (const auto& [path, times] : dir_times_)
    // Nothing in a mounted overlay's upper dir changes (what was replaced is
    // removed from its work dir): its directories' times are final.
    if (overlay_ && (path == overlay_->upper_dir() ||
                     path.compare(0, overlay_->upper_dir().size() + 1, overlay_->upper_dir() + "/") == 0))
      continue;
    else if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      LOG_WARN("snapshot: could not set the times of %s again: %s", path.c_str(), std::strerror(errno));
  kept_ = true;
}

SnapshotRestore::~SnapshotRestore() {
  if (!kept_) Rollback();
}

}  // namespace cryo
