// The dump half of unlinked files: regular files and directories the tree
// holds (fds, mappings, working directories, executables) that were deleted
// and have no name left. Each is a shared object recorded once per inode
// (files.img), a regular file's content stored once (files-data.img), read
// through one holder (/proc/PID/fd/N, /proc/PID/map_files/A-B, /proc/PID/cwd
// or exe: a new open file, so no offset of the tree moves), streamed in runs
// of at most 8 MiB, holes skipped (SEEK_DATA/SEEK_HOLE). The restore half is
// unlinked_restore.h.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

// One dumped process: its records (holders get their unlinked_file id) and
// the VMAs (indices into mm->vmas()) DescribeVmas found mapping an unlinked file.
struct UnlinkedHolders {
  pid_t pid;
  image::ProcessCore* core;  // cwd and executable
  image::Mm* mm;
  image::FdTable* fds;
  const std::vector<int>* maps;
};

// Before anything is written: refuses what DumpUnlinkedFiles would refuse
// (an unlinked file also held outside `tree`, every pid of the tree; one that
// is neither a regular file nor a directory). Only stats: nothing changes.
// `core` of each holder only gets the other name of a deleted executable.
Status CheckUnlinkedFiles(const std::vector<UnlinkedHolders>& procs, const std::set<pid_t>& tree);

// Finds every unlinked file the tree holds (FD_UNLINKED_FILE fds, the VMAs of
// `maps`, deleted working directories and executables), refuses one that a
// process outside `tree` also holds open (the restored tree would get a copy
// of its own, no longer shared), reads each one's metadata and content,
// writes the content to files-data.img and fills `table`. An executable
// deleted through its name but linked elsewhere gets that name. Adds
// "unlinked-files" to `features` when there are any.
Status DumpUnlinkedFiles(const std::vector<UnlinkedHolders>& procs, const std::set<pid_t>& tree,
                         image::ImageWriter* writer, image::UnlinkedFileTable* table, std::set<std::string>* features);

// Streams the data of `fd` (a regular file of `size` bytes) into `out` from
// byte `*offset` on, one extent per run of data of at most `max_extent` bytes
// (holes are skipped, SEEK_DATA/SEEK_HOLE), each checksummed; advances
// `*offset`. `what` names the file in errors. Also the content of snapshot
// files (snapshot_dump.h).
Status StreamFileData(int fd, uint64_t size, const std::string& what, WritableFile* out, uint64_t* offset,
                      google::protobuf::RepeatedPtrField<image::FileExtent>* extents, uint64_t max_extent = 8ull << 20);

}  // namespace cryo
