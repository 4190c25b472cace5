// snapshot.img validation (files carried by --snapshot-path, files/snapshot_*.h).
#include <set>
#include <string>

#include "image/format.h"
#include "image/image_dir.h"

namespace cryo::image {

namespace {

constexpr uint64_t kMaxExtent = 8ull << 20;

// Absolute, no empty, "." or ".." component, no NUL, no trailing slash.
bool CleanPath(const std::string& p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/' || p.find('\0') != std::string::npos) return false;
  for (size_t at = 1; at <= p.size();) {
    const size_t next = std::min(p.find('/', at), p.size());
    const std::string part = p.substr(at, next - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = next + 1;
  }
  return true;
}

bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

// --fs-root (files/fs_root.h): clean paths; an overlay's options without the
// layers (given apart) and without a character mount(2) would misread.
Status ValidateFsRoot(const std::string& what, const FsRoot& r) {
  const std::string bad = what + ": fs_root ";
  if (!CleanPath(r.path())) return Status::Error(bad + "path is not a clean absolute path (corrupted)");
  if (r.kind() == FS_ROOT_DIRECTORY) {
    if (!r.upper_dir().empty() || !r.work_dir().empty() || r.lowers_size() || !r.mount_options().empty())
      return Status::Error(bad + "of a directory has overlay layers (corrupted)");
    return Status::Ok();
  }
  if (r.kind() != FS_ROOT_OVERLAY) return Status::Error(bad + "has unknown kind " + std::to_string(r.kind()) + " (corrupted)");
  auto layer = [](const std::string& p) { return CleanPath(p) && p.find_first_of(",:\\=\n") == std::string::npos; };
  if (!layer(r.upper_dir()) || !layer(r.work_dir()) || r.lowers_size() == 0)
    return Status::Error(bad + "overlay layers are malformed (corrupted)");
  for (const OverlayLower& l : r.lowers())
    if (!layer(l.path())) return Status::Error(bad + "overlay lower dir \"" + l.path() + "\" is malformed (corrupted)");
  for (const std::string& layer_dir : {r.upper_dir(), r.work_dir()})
    if (layer_dir == r.path() || Under(layer_dir, r.path()) || Under(r.path(), layer_dir))
      return Status::Error(bad + "overlay layer " + layer_dir + " overlaps its mount point (corrupted)");
  const std::string& o = r.mount_options();
  if (o.find('\0') != std::string::npos || o.find("dir=") != std::string::npos)
    return Status::Error(bad + "overlay mount options are malformed (corrupted)");
  return Status::Ok();
}

}  // namespace

Status ValidateSnapshot(const LoadedImage& img) {
  const std::string what = img.dir + "/" + SnapshotName();
  const bool overlay = img.snapshot.has_fs_root() && img.snapshot.fs_root().kind() == FS_ROOT_OVERLAY;
  if (img.snapshot.has_fs_root()) CRYO_RETURN_IF_ERROR(ValidateFsRoot(what, img.snapshot.fs_root()));
  uint64_t expect_off = kPageDataOffset;
  const std::string* prev = nullptr;
  std::set<std::string> files;  // regular files with content met so far (link_of targets)
  for (const SnapshotEntry& e : img.snapshot.entries()) {
    const std::string entry = what + ": " + e.path();
    if (!CleanPath(e.path())) return Status::Error(what + ": path \"" + e.path() + "\" is not a clean absolute path (corrupted)");
    if (prev && !(*prev < e.path())) return Status::Error(entry + ": entries out of order or twice (corrupted)");
    prev = &e.path();
    if (e.kind() != SNAPSHOT_REGULAR && e.kind() != SNAPSHOT_DIRECTORY && e.kind() != SNAPSHOT_SYMLINK &&
        e.kind() != SNAPSHOT_WHITEOUT)
      return Status::Error(entry + ": unknown kind " + std::to_string(e.kind()) + " (corrupted)");
    if (e.kind() == SNAPSHOT_WHITEOUT && !(overlay && Under(e.path(), img.snapshot.fs_root().upper_dir())))
      return Status::Error(entry + ": a whiteout outside an --fs-root overlay's upper dir (corrupted)");
    if (e.mode() & ~07777u) return Status::Error(entry + ": mode has more than permission bits (corrupted)");
    if (e.kind() != SNAPSHOT_REGULAR && (e.size() || e.extents_size() || e.depth()))
      return Status::Error(entry + ": content for a directory or link (corrupted)");
    if (e.kind() == SNAPSHOT_SYMLINK && (e.link_target().empty() || e.link_target().find('\0') != std::string::npos))
      return Status::Error(entry + ": a link without a valid target (corrupted)");
    if (!e.link_of().empty()) {
      // Another name of a file carried before it (in path order).
      if (e.kind() != SNAPSHOT_REGULAR || e.size() || e.extents_size() || e.depth() || !files.count(e.link_of()))
        return Status::Error(entry + ": a hard link to " + e.link_of() +
                             ", which is not a file with content before it (corrupted)");
    } else if (e.kind() == SNAPSHOT_REGULAR) {
      files.insert(e.path());
    }
    if (e.depth() > img.ancestors.size())
      return Status::Error(entry + ": its content is in ancestor " + std::to_string(e.depth()) + ", and the image has " +
                           std::to_string(img.ancestors.size()) + " (corrupted)");
    uint64_t prev_end = 0;
    for (const FileExtent& x : e.extents()) {
      if (x.length() == 0 || x.length() > kMaxExtent || x.offset() < prev_end || x.offset() + x.length() < x.offset() ||
          x.offset() + x.length() > e.size() || (e.depth() == 0 && x.data_offset() != expect_off))
        return Status::Error(entry + ": content extents are malformed (corrupted)");
      prev_end = x.offset() + x.length();
      if (e.depth() == 0) expect_off += x.length();
    }
  }
  if (expect_off - kPageDataOffset != img.snapshot.data_size())
    return Status::Error(what + ": content size does not match the extents (corrupted)");
  return Status::Ok();
}

}  // namespace cryo::image
