// Every file an image refers to by path, as the restore reopens it (fds of
// regular files and directories, file mappings, working directory, root,
// executable), one entry per path with what the dump recorded of it. The
// restore refuses a file that changed since (files/changed_files.h); `cryo
// show` lists them.
#pragma once

#include <string>
#include <vector>

#include "image/image_dir.h"

namespace cryo::image {

// What a difference means for a file.
enum class FileCheck {
  // Only which file the path leads to (device and inode): directories (their
  // size and mtime change with every entry made or removed in them, and a
  // process reads them afresh), O_PATH fds, and files only appended to
  // (O_WRONLY|O_APPEND: nothing is read back, and every write lands at the
  // end whatever the size).
  kIdentity,
  // Identity, size and mtime, and the content hash where one was recorded:
  // files read, written at an offset, or mapped.
  kContent,
};

struct ReferencedFile {
  std::string path;
  FileId recorded;                   // as the dump saw it (with a content hash if one holder has it)
  // Every distinct record of it among its holders, `recorded` included: one,
  // unless the file changed while the dump read it (or the image was edited);
  // the restore compares the file with each.
  std::vector<FileId> records;
  FileCheck check = FileCheck::kIdentity;  // the strictest of its holders'
  std::vector<std::string> holders;  // "fd 3 of pid 12", "mapped by pid 12", "executable of pid 12", ...
};

// In path order. Files whose content is in the image (unlinked files, memfds,
// /dev/shm), FIFOs, devices, sockets and files under /proc and /sys (made by
// the kernel at each read) are not listed.
std::vector<ReferencedFile> ReferencedFiles(const LoadedImage& img);

// "fd 3 of pid 12, mapped by pid 12 and 2 more".
std::string HoldersText(const ReferencedFile& f, size_t max_shown = 3);

}  // namespace cryo::image
