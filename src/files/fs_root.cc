#include "files/fs_root.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "image/format.h"
#include "proc/proc.h"

namespace cryo {

namespace {

bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

// cryo's own mount table.
Result<std::vector<proc::MountInfo>> Mounts() {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/mountinfo"));
  return proc::ParseMountInfo(text);
}

// The topmost mount on `dir`, or none.
const proc::MountInfo* MountOn(const std::vector<proc::MountInfo>& mounts, const std::string& dir) {
  const proc::MountInfo* top = nullptr;
  for (const proc::MountInfo& m : mounts)
    if (m.mount_point == dir) top = &m;  // later lines are mounted over earlier ones
  return top;
}

struct OverlayOptions {
  std::vector<std::string> lowers;
  std::string upper, work, rest;
  bool read_only = false;
};

// The super options of an overlay mount, as mountinfo shows them (escaped
// characters left as \ooo: a path with one is refused by name).
Result<OverlayOptions> ParseOverlay(const std::string& dir, const std::vector<std::string>& super) {
  OverlayOptions o;
  auto refuse = [&dir](const std::string& why) {
    return Status::Error("--fs-root " + dir + ": the overlayfs mounted there " + why);
  };
  for (const std::string& opt : super) {
    const size_t eq = opt.find('=');
    const std::string key = opt.substr(0, eq), value = eq == std::string::npos ? "" : opt.substr(eq + 1);
    if (key == "lowerdir" || key == "upperdir" || key == "workdir") {
      if (value.find('\\') != std::string::npos || value.empty())
        return refuse("has a layer path cryo does not give back to mount(2) as it is (" + opt +
                      "): rename the layer without spaces, commas, colons or backslashes");
      if (key == "upperdir") o.upper = value;
      if (key == "workdir") o.work = value;
      if (key == "lowerdir") {
        if (value.find("::") != std::string::npos) return refuse("has data-only lower layers (lowerdir=...::...)");
        for (size_t at = 0; at <= value.size();) {
          const size_t colon = std::min(value.find(':', at), value.size());
          o.lowers.push_back(value.substr(at, colon - at));
          at = colon + 1;
        }
      }
      continue;
    }
    if (opt == "ro") o.read_only = true;
    if (opt == "ro" || opt == "rw") continue;
    // The index (index=on) records upper files by their lower origin's file
    // handle in the work dir, which is not carried; NFS export needs it.
    if (opt == "index=on" || opt == "nfs_export=on")
      return refuse("has " + opt + ", whose index in the work dir cryo does not carry");
    if (opt.find('\\') != std::string::npos) return refuse("has an option cryo does not give back as it is (" + opt + ")");
    o.rest += (o.rest.empty() ? "" : ",") + opt;
  }
  if (o.upper.empty() || o.work.empty())
    return refuse("has no upper dir (a read-only overlay): there is nothing to carry; leave out --fs-root");
  if (o.lowers.empty()) return refuse("has no lower dir");
  return o;
}

// nftw has no user pointer: the walk of one lower dir at a time.
thread_local struct {
  size_t base = 0;
  uint64_t sum = 0, entries = 0;
} g_lower;

int LowerEntry(const char* path, const struct stat* st, int flag, struct FTW*) {
  if (flag == FTW_NS || flag == FTW_DNR) {
    errno = EACCES;
    return -1;
  }
  std::string rec = std::string(path + std::min(g_lower.base, std::strlen(path))) + '\0';
  const uint64_t fields[] = {static_cast<uint64_t>(st->st_mode), st->st_uid, st->st_gid,
                             S_ISDIR(st->st_mode) ? 0 : static_cast<uint64_t>(st->st_size),
                             static_cast<uint64_t>(st->st_mtim.tv_sec) * 1000000000ull +
                                 static_cast<uint64_t>(st->st_mtim.tv_nsec)};
  rec.append(reinterpret_cast<const char*>(fields), sizeof(fields));
  if (S_ISLNK(st->st_mode)) {
    char target[PATH_MAX];
    const ssize_t n = ::readlink(path, target, sizeof(target));
    if (n < 0) return -1;
    rec.append(target, static_cast<size_t>(n));
  }
  // A sum of the entries' hashes: the same whatever order readdir gives.
  g_lower.sum += image::HashBytes(rec.data(), rec.size());
  ++g_lower.entries;
  return 0;
}

}  // namespace

Result<image::OverlayLower> DescribeLower(const std::string& path) {
  image::OverlayLower out;
  out.set_path(path);
  g_lower = {};
  g_lower.base = path.size();
  // FTW_MOUNT: the layer's own file system, as overlayfs sees it.
  if (::nftw(path.c_str(), LowerEntry, 32, FTW_PHYS | FTW_MOUNT) != 0)
    return Status::FromErrno("overlay lower dir " + path + ": walking it");
  out.set_entries(g_lower.entries);
  out.set_tree_xxh3(g_lower.sum);
  return out;
}

Result<FsRootSource> DescribeFsRoot(const std::string& dir_arg) {
  char resolved[PATH_MAX];
  if (!::realpath(dir_arg.c_str(), resolved)) return Status::FromErrno("--fs-root " + dir_arg);
  const std::string dir = resolved;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno("--fs-root " + dir);
  if (!S_ISDIR(st.st_mode)) return Status::Error("--fs-root " + dir + ": not a directory");
  if (dir == "/")
    return Status::Error("--fs-root /: cryo's own root file system is not carried; name the container's root "
                         "directory");
  FsRootSource src;
  src.walk_root = dir;
  src.record.set_path(dir);
  src.record.set_kind(image::FS_ROOT_DIRECTORY);
  struct statfs fs;
  if (::statfs(dir.c_str(), &fs) != 0) return Status::FromErrno("--fs-root " + dir + ": statfs");
  if (fs.f_type != OVERLAYFS_SUPER_MAGIC) return src;
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::MountInfo> mounts, Mounts());
  const proc::MountInfo* m = MountOn(mounts, dir);
  if (!m || m->fstype != "overlay" || m->root != "/") {
    // Inside an overlay, not its root: walked through the merged view.
    LOG_INFO("--fs-root %s: inside an overlayfs but not its mount point: walked as a directory", dir.c_str());
    return src;
  }
  for (const proc::MountInfo& sub : mounts)
    if (Under(sub.mount_point, dir))
      return Status::Error("--fs-root " + dir + ": " + sub.mount_point + " (" + sub.fstype +
                           ") is mounted on top of the overlay; cryo carries the overlay's upper dir only: "
                           "unmount it, or dump its content with --snapshot-path of a directory it is not on");
  CRYO_ASSIGN_OR_RETURN(OverlayOptions o, ParseOverlay(dir, m->super_options));
  src.walk_root = o.upper;
  src.whiteouts = true;
  src.record.set_kind(image::FS_ROOT_OVERLAY);
  src.record.set_upper_dir(o.upper);
  src.record.set_work_dir(o.work);
  src.record.set_mount_options(o.rest + (o.read_only ? std::string(o.rest.empty() ? "" : ",") + "ro" : ""));
  for (const std::string& l : o.lowers) {
    CRYO_ASSIGN_OR_RETURN(image::OverlayLower lower, DescribeLower(l));
    *src.record.add_lowers() = std::move(lower);
  }
  LOG_INFO("--fs-root %s: an overlayfs: carrying its upper dir %s; %d lower dirs recorded by identity", dir.c_str(),
           o.upper.c_str(), src.record.lowers_size());
  return src;
}

std::string OverlayRemount::Options() const {
  std::string lowers;
  for (const image::OverlayLower& l : root_.lowers()) lowers += (lowers.empty() ? "" : ":") + l.path();
  std::string o = "lowerdir=" + lowers + ",upperdir=" + root_.upper_dir() + ",workdir=" + root_.work_dir();
  if (!root_.mount_options().empty()) o += "," + root_.mount_options();
  return o;
}

Result<std::unique_ptr<OverlayRemount>> OverlayRemount::Unmount(const image::FsRoot& root) {
  std::unique_ptr<OverlayRemount> r(new OverlayRemount(root));
  const std::string& dir = root.path();
  for (const image::OverlayLower& want : root.lowers()) {
    struct stat st;
    if (::stat(want.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Status::Error("--fs-root " + dir + ": the overlay's lower dir " + want.path() +
                           " is missing (the image carries only the upper dir): put it back there");
    CRYO_ASSIGN_OR_RETURN(image::OverlayLower now, DescribeLower(want.path()));
    if (now.entries() != want.entries() || now.tree_xxh3() != want.tree_xxh3())
      return Status::Error("--fs-root " + dir + ": the overlay's lower dir " + want.path() +
                           " changed since the dump (" + std::to_string(want.entries()) + " -> " +
                           std::to_string(now.entries()) +
                           " entries, or a file's size, mode, owner, mtime or a link differs): the image carries "
                           "only the upper dir, which would sit on other lower files; restore on the same layers");
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::Error("--fs-root " + dir + ": the overlay's mount point is missing: make the directory");
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::MountInfo> mounts, Mounts());
  if (const proc::MountInfo* m = MountOn(mounts, dir)) {
    if (m->fstype != "overlay")
      return Status::Error("--fs-root " + dir + ": a " + m->fstype +
                           " is mounted there, not the image's overlay: unmount it");
    CRYO_ASSIGN_OR_RETURN(OverlayOptions o, ParseOverlay(dir, m->super_options));
    std::vector<std::string> want;
    for (const image::OverlayLower& l : root.lowers()) want.push_back(l.path());
    if (o.upper != root.upper_dir() || o.work != root.work_dir() || o.lowers != want)
      return Status::Error("--fs-root " + dir + ": another overlay is mounted there (upper dir " + o.upper +
                           ", the image's " + root.upper_dir() + "): unmount it");
    for (const proc::MountInfo& sub : mounts)
      if (Under(sub.mount_point, dir))
        return Status::Error("--fs-root " + dir + ": " + sub.mount_point +
                             " is mounted on the overlay: unmount it before the restore");
    r->old_options_ = "lowerdir=";
    for (size_t i = 0; i < o.lowers.size(); ++i) r->old_options_ += (i ? ":" : "") + o.lowers[i];
    r->old_options_ += ",upperdir=" + o.upper + ",workdir=" + o.work + (o.rest.empty() ? "" : "," + o.rest);
    if (o.read_only) r->old_options_ += ",ro";
    // Unmounted, not detached: a process outside the tree still using it
    // would keep the old upper dir's files open while the restore changes it.
    if (::umount2(dir.c_str(), UMOUNT_NOFOLLOW) != 0)
      return Status::FromErrno("--fs-root " + dir + ": unmounting the overlay to put its upper dir back" +
                               (errno == EBUSY ? " (a process outside the tree uses it: stop it)" : ""));
    r->was_mounted_ = true;
  }
  if (::mkdir(root.work_dir().c_str(), 0700) == 0) r->made_work_ = true;
  else if (errno != EEXIST) return Status::FromErrno("--fs-root " + dir + ": making the work dir " + root.work_dir());
  return r;
}

Status OverlayRemount::Mount() {
  const std::string o = Options();
  if (::mount("overlay", root_.path().c_str(), "overlay", 0, o.c_str()) != 0)
    return Status::FromErrno("--fs-root " + root_.path() + ": mounting the overlay again (" + o + ")");
  mounted_ = true;
  LOG_INFO("--fs-root %s: overlay mounted again (%s)", root_.path().c_str(), o.c_str());
  return Status::Ok();
}

void OverlayRemount::UnmountOurs() {
  if (mounted_ && ::umount2(root_.path().c_str(), UMOUNT_NOFOLLOW) != 0) {
    LOG_WARN("--fs-root %s: could not unmount the restored overlay: %s; detaching it", root_.path().c_str(),
             std::strerror(errno));
    (void)::umount2(root_.path().c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  }
  mounted_ = false;
}

void OverlayRemount::RemountOld() {
  if (made_work_) (void)::rmdir(root_.work_dir().c_str());
  if (was_mounted_ && ::mount("overlay", root_.path().c_str(), "overlay", 0, old_options_.c_str()) != 0)
    LOG_WARN("--fs-root %s: could not mount the overlay again as it was (%s): %s", root_.path().c_str(),
             old_options_.c_str(), std::strerror(errno));
  was_mounted_ = false;
}

}  // namespace cryo
