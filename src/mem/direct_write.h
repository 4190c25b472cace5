// Page data written past the page cache: the page file of a big process in a
// kill-mode dump that is made durable (no --no-sync, no --leave-running) is
// written with O_DIRECT from the page ring (page_dump.h).
//
// Such a dump must have every byte on the disk before it kills the tree. A
// buffered write(2) copies each byte into the page cache and the disk then
// reads it from there (writeback, waited for by fsync); O_DIRECT hands the
// ring's buffer to the disk itself: no copy into the page cache, no dirty
// pages, and the copy of the next buffer out of the target overlaps the disk
// writing the previous one. Measured on 1 GiB (bench/README.md, "Branch
// splicecopy"): faster than write+fsync of the same bytes. Not for the other
// modes: without a sync, or with the tree running again before the sync, the
// page cache is the faster place to leave the bytes in.
//
// The file keeps its ordinary descriptor (header, fsync): the direct one is a
// second open file description of the same inode (/proc/self/fd/N reopened),
// so nothing else sees O_DIRECT. Writes must be aligned to what statx(2)
// reports (STATX_DIOALIGN, Linux 6.1); where it reports more than a page or
// no direct I/O, or the reopen fails (a file system without O_DIRECT:
// EINVAL), the page file is written through the page cache as before; a
// direct write refused with EINVAL (an alignment the file system did not
// report) is written through the page cache instead, and so is the rest.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/env.h"
#include "base/local_file.h"
#include "base/status.h"
#include "base/unique_fd.h"

namespace cryo {

class DirectPageWriter {
 public:
  // Not usable (valid() false): the caller writes through `file`.
  DirectPageWriter() = default;
  // A writer for `file` when it is a local file (base/local_file.h) on a
  // file system that takes O_DIRECT writes aligned to pages; an empty one
  // otherwise (why: at debug level in the log).
  static DirectPageWriter Open(WritableFile* file);
  bool valid() const { return fd_.valid(); }
  // Writes n bytes at `offset`: data, n and offset multiples of the page
  // size. Errors name the file, as WritableFile's do.
  Status WriteAt(const char* data, size_t n, off_t offset);
  // No more direct writes (valid() false from now on).
  void Close() { fd_.reset(); }

 private:
  DirectPageWriter(UniqueFd fd, LocalFile* local, std::string path)
      : fd_(std::move(fd)), local_(local), path_(std::move(path)) {}
  UniqueFd fd_;
  LocalFile* local_ = nullptr;  // told of every direct write
  std::string path_;
};

}  // namespace cryo
