// The dump half of file snapshots (`cryo dump --snapshot-path PATH`,
// `--snapshot-open-files`): files and directories whose content the image
// carries, so that `cryo restore` can put them back as they were at the dump
// (snapshot_restore.h): a temporary file the program closed and will open
// again, a database and its journal in the middle of a transaction.
//
// What is carried: regular files (content with its holes, SEEK_DATA and
// SEEK_HOLE), directories (their entries, recursively) and symbolic links
// (the link itself), each with its mode, owner, xattrs and times. Anything
// else met on the way (a device node, a socket, a FIFO, a mount point of
// another file system, /proc or /sys) is refused by name before the tree is
// touched. A file with several names (hard links) is carried once, its other
// names as links to the first; every name must be in the snapshot.
//
// The content is read while the tree is frozen: what the tree wrote is all
// there. A process outside the tree writing the same files meanwhile is not
// frozen: its writes may be half in (docs/architecture.md, "File snapshots").
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "files/fs_root.h"
#include "image/image_dir.h"

namespace cryo {

// One path to carry, found by PlanSnapshot or AddOpenFiles (no content yet).
struct SnapshotItem {
  std::string path;
  struct stat st;
  bool root = false;       // named on the command line (or an open file)
  std::string link_target;  // symlinks
  std::string link_of;      // another name of the regular file at this path (carried first)
};

// The whole walk, in path order (a directory before its entries).
struct SnapshotPlan {
  std::vector<SnapshotItem> items;
  bool has_fs_root = false;  // --fs-root: its record (files/fs_root.h)
  image::FsRoot fs_root;
  bool empty() const { return items.empty(); }
};

// Walks every --snapshot-path (made absolute, its symbolic links resolved),
// refusing by name what cannot be carried. Only reads: nothing changes.
// `mount_points`: paths not walked into (the mount points of a tree's own
// mount namespace met inside one of its tmpfs mounts, made by the restore).
// `fs_root`: --fs-root DIR (or empty), walked as DescribeFsRoot says (an
// overlay's upper dir, whiteouts included), the paths above not walked into.
Result<SnapshotPlan> PlanSnapshot(const std::vector<std::string>& paths,
                                  const std::set<std::string>& mount_points = {}, const std::string& fs_root = {});

// --snapshot-open-files: adds every regular file an fd of `tables` holds
// (FD_REGULAR, by the path it was dumped with) that is not already in the plan.
Status AddOpenFiles(const std::vector<const image::FdTable*>& tables, SnapshotPlan* plan);

// Reads every planned item again (a file that changed type or vanished since
// the plan is refused), its xattrs and, for regular files, its content:
// stored in snapshot-data.img unless `parent` (the --parent image's table, or
// null) holds the same path with the same size, mtime and content hash, which
// is then named by depth. Adds "snapshot-files" to `features` (and "fs-root"
// with --fs-root).
Status DumpSnapshot(const SnapshotPlan& plan, const image::SnapshotTable* parent, image::ImageWriter* writer,
                    image::SnapshotTable* table, std::set<std::string>* features);

}  // namespace cryo
