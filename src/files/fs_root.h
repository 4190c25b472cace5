// `cryo dump --fs-root DIR`: a container's whole root file system carried in
// the image, as file snapshots (snapshot_dump.h, snapshot_restore.h) of the
// cheapest consistent source DIR offers:
//   - DIR the mount point of an overlayfs (a container's usual root): only
//     its upper dir is walked and carried, whiteouts (character devices 0:0)
//     and opaque directories (the trusted.overlay.opaque xattr) included; the
//     lower dirs are recorded by path and by a digest of their entries' stat
//     data, and the restore refuses, by name, a lower dir that changed. The
//     restore unmounts the overlay (refused if something outside the tree
//     still uses it), puts the upper dir back while nothing is mounted on it
//     (the kernel does not allow changing an overlay's layers while mounted:
//     Documentation/filesystems/overlayfs.rst, "Changes to underlying
//     filesystems") and mounts the overlay again with the same options.
//   - any other directory: DIR walked like a --snapshot-path, without
//     crossing into another file system (a mount point under DIR is refused
//     by name unless it has a --snapshot-path of its own).
// cryo does not exec rsync: the walk already compares by content hash,
// keeps holes, xattrs, owners and times, and runs while the tree is frozen;
// rsync would be one more program to trust with a frozen tree's files.
// The restore puts DIR back at the same path (the tree's paths name it).
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// What the dump walks for --fs-root DIR.
struct FsRootSource {
  std::string walk_root;   // DIR, or the overlay's upper dir
  bool whiteouts = false;  // overlay upper dir: character devices 0:0 are whiteouts
  image::FsRoot record;
};

// Looks at DIR (made absolute): an overlayfs mounted on it, or a directory.
// Refuses by name what cannot be carried (an overlay without an upper dir or
// with index=on, mounts on top of the overlay, a pseudo file system, "/").
// Only reads.
Result<FsRootSource> DescribeFsRoot(const std::string& dir);

// The identity of a lower dir: its entries' count and stat digest.
Result<image::OverlayLower> DescribeLower(const std::string& path);

// The restore's overlay: Unmount() before the upper dir is put back,
// Mount() after; on failure UnmountOurs() before the upper dir's rollback
// and RemountOld() after it.
class OverlayRemount {
 public:
  // Checks every lower dir against the image (refused by name if one
  // changed), then unmounts the overlay on DIR if one is mounted there (it
  // must be the image's: same upper and lower dirs) and makes the work dir
  // if it is missing.
  static Result<std::unique_ptr<OverlayRemount>> Unmount(const image::FsRoot& root);
  Status Mount();
  void UnmountOurs();
  void RemountOld();
  // Where the restore keeps what it replaces in the upper dir until it
  // succeeds (on the upper dir's file system, outside the layers).
  const std::string& work_dir() const { return root_.work_dir(); }
  const std::string& upper_dir() const { return root_.upper_dir(); }

 private:
  explicit OverlayRemount(const image::FsRoot& root) : root_(root) {}
  std::string Options() const;
  image::FsRoot root_;
  bool was_mounted_ = false, mounted_ = false, made_work_ = false;
  std::string old_options_;
};

}  // namespace cryo
