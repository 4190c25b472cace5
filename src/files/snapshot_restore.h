// The restore half of file snapshots (snapshot.img, snapshot_dump.h): before
// the tree is created, every carried file, directory and symbolic link is put
// back as it was at the dump, so that the tree reopens the files it held and
// finds the ones it will open:
//   - a regular file that differs (size, mtime, mode, owner or content hash)
//     is written under a temporary name beside it (.cryo-new-PID-N) with its
//     content, holes, owner, mode, xattrs and times, then renamed over it;
//     an identical one is left alone;
//   - a symbolic link likewise (made as a link, renamed over);
//   - a file with several names (hard links, link_of) is made anew under the
//     first and link(2)ed under a temporary name beside each other, renamed
//     over it: the names share one inode again;
//   - a missing directory is made; entries made in a carried directory since
//     the dump are moved away (it is put back exactly); its owner, mode,
//     xattrs and times are set once its entries are in place;
//   - whatever was replaced or moved away is kept under a temporary name
//     (.cryo-old-PID-N) until the restore succeeds, then removed; a restore
//     that fails puts everything back as it found it (the destructor).
// A cryo killed with SIGKILL in between leaves those temporary names behind
// (nothing is lost: the old files are there under them).
// --fs-root of an overlay (fs_root.h): the overlay on DIR is unmounted first,
// its upper dir put back as above (whiteouts made again as character devices
// 0:0; what is replaced kept in the overlay's work dir, so that nothing
// extra shows through the mount) and the overlay mounted again; a failure
// unmounts it, undoes the upper dir and mounts the overlay that was there.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "files/fs_root.h"
#include "image/image_dir.h"

namespace cryo {

class SnapshotRestore {
 public:
  // Puts back every entry of `img.snapshot` (those whose path `take` accepts,
  // if given); on failure, undoes what it did.
  static Result<std::unique_ptr<SnapshotRestore>> Apply(const image::LoadedImage& img,
                                                        const std::function<bool(const std::string&)>& take = {});
  ~SnapshotRestore();
  SnapshotRestore(const SnapshotRestore&) = delete;
  SnapshotRestore& operator=(const SnapshotRestore&) = delete;
  // The restore succeeded: what was replaced goes for good.
  void Keep();

  size_t written() const { return written_; }
  size_t unchanged() const { return unchanged_; }

 private:
  enum class Op { kCreated, kReplaced, kMovedAway, kAttrs, kXattr };
  struct Undo {
    Op op;
    std::string path;
    std::string backup;  // kReplaced, kMovedAway
    struct stat was {};  // kAttrs
    std::string name{}, value{};  // kXattr: an xattr removed (set again on undo)
  };
  SnapshotRestore() = default;
  Status Put(const image::LoadedImage& img, const image::SnapshotEntry& e, const std::vector<int>& data_fds);
  Status PutLink(const image::SnapshotEntry& e, bool exists, const struct stat& st);
  Status PutDirectory(const image::SnapshotEntry& e, const std::set<std::string>& children);
  Status DropOtherXattrs(const image::SnapshotEntry& e);
  Status Publish(const std::string& temp, const std::string& path, bool exists);
  std::string TempName(const std::string& path, const char* kind);
  void Rollback();
  std::vector<Undo> undo_;
  std::unique_ptr<OverlayRemount> overlay_;  // --fs-root of an overlay
  // The carried directories' times, set again once the temporary names in
  // them are gone (removing an entry changes a directory's mtime).
  std::vector<std::pair<std::string, struct timespec[2]>> dir_times_;
  std::set<std::string> linked_;  // paths of files with other names (link_of)
  bool kept_ = false;
  size_t written_ = 0, unchanged_ = 0, counter_ = 0;
};

// The paths whose content the image carries (they are put back, so they are
// not "changed" for the changed-file check, files/changed_files.h); with
// --fs-root, every path of the image under DIR.
std::set<std::string> SnapshotPaths(const image::LoadedImage& img);

}  // namespace cryo
