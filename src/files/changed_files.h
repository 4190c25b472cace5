// Files changed since the dump, the restore's half (file_facts.h is the
// dump's): before the tree is created, every file the image refers to by path
// (image/referenced_files.h) is compared with what the dump recorded. A file
// that was replaced (another inode), grew, shrank, was written (mtime), or
// whose content hash differs is refused by default, naming the file, its
// holders and the change: the restored process would go on with a view of it
// (offsets, mapped pages, parsed content, code) that no longer matches.
// --allow-changed PATH (one file) or --ignore-changed-files (every file) go
// on with the file as it is now: a database the original kept writing after a
// leave-running dump changed legitimately, and the user says so. A missing
// file is refused whatever the options (cryo reopens it by path).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/image_dir.h"
#include "image/referenced_files.h"

namespace cryo {

struct ChangedFilesPolicy {
  bool ignore_all = false;           // --ignore-changed-files
  std::vector<std::string> allowed;  // --allow-changed PATH (repeatable)
  // Files the restore put back from the image (--snapshot-path): as the dump
  // left them, whatever their inode; not checked.
  std::set<std::string> carried;
};

// How the file `now` differs from `was` for `check` ("size 10 -> 20 bytes",
// "mtime 2026-12-06 20:11:43.000000001 -> ...", "replaced: another file, inode
// 12 -> 34"); empty if it does not. The content hash is compared apart.
std::vector<std::string> FileChanges(const image::FileId& was, const struct stat& now, image::FileCheck check);

// "content differs (XXH3-64 0123456789abcdef -> ...) with the same size and mtime".
std::string ContentChange(uint64_t was, uint64_t now);

// Checks every referenced file of `img` against `policy`. A refused change
// is an error naming each changed file; an allowed one is a warning, and the
// image's records of it take its current size and mtime (the mapping restore
// checks them again right before it maps the file, against a change during
// the restore).
Status CheckChangedFiles(image::LoadedImage* img, const ChangedFilesPolicy& policy);

}  // namespace cryo
