// The page half of a memory dump: which pages of a process to store
// (PAGEMAP_SCAN), and copying them into the page file.
//
// The copy is a two-stage pipeline over a small ring of buffers: the calling
// thread reads target memory with process_vm_readv(2) into a free buffer and
// hashes each page run while it is cache-hot; a writer thread writes full
// buffers to the page file and starts their writeback at once
// (sync_file_range(2) SYNC_FILE_RANGE_WRITE), so reading the target, copying
// into the page cache and writing to the disk overlap and the final fsync has
// little left to do. cryo's memory stays the size of the ring whatever the
// size of the target.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "mem/pagemap_scan.h"

namespace cryo {

// Called with (bytes written so far, total bytes) as pages are written; the
// last call, once everything is written, has done == total.
using ProgressFn = std::function<void(uint64_t, uint64_t)>;

// Target memory stored contiguously in the page file.
struct PagePiece {
  uint64_t vaddr = 0;
  uint64_t len = 0;
  uint64_t file_off = 0;
  // false: read via /proc/PID/mem, because its VMA lacks PROT_READ, or because
  // its pages are shared with another process (SplitShared).
  bool readable = true;
};

// Marks the parts of `pieces` inside `shared` (address ranges, ascending)
// readable = false, splitting pieces where needed. process_vm_readv(2) pins
// the pages it reads, and pinning an anonymous page that more than one process
// maps unshares it: the kernel gives the target its own copy
// (gup_must_unshare() in mm/gup.c), which would undo the copy-on-write sharing
// of a tree and grow its memory. /proc/PID/mem reads without pinning.
void SplitShared(std::vector<PagePiece>* pieces, const std::vector<std::pair<uint64_t, uint64_t>>& shared);

// The present pages of [start, end) with their categories (PagemapScanner::Scan).
using PageScanFn = std::function<Result<std::vector<PageRegion>>(uint64_t start, uint64_t end)>;

// Lays out the pages worth storing: appends mm's page runs (each <= kMaxRunBytes,
// never across two VMAs, at increasing file offsets from kPageDataOffset on),
// sets every VMA's stored_pages and mm's total_pages. Returns the pieces in file
// order; together they cover the runs exactly.
inline constexpr uint64_t kMaxRunBytes = 4ull << 20;  // runs are the unit of parallel restore
// With `block` (a multiple of the page size, at most kMaxRunBytes), no run
// crosses an address that is a multiple of it.
Result<std::vector<PagePiece>> PlanPages(image::Mm* mm, const PageScanFn& scan, uint64_t block = 0);

// Where the bytes of pieces come from.
class PageSource {
 public:
  virtual ~PageSource() = default;
  // Reads pieces[0..n) one after the other into dst (sum of their lengths).
  virtual Status Read(const PagePiece* pieces, size_t n, char* dst) = 0;
};

// The memory of a (stopped) process: process_vm_readv(2) with up to IOV_MAX
// pieces per call; /proc/PID/mem for pieces it cannot read (VMAs without
// PROT_READ: the mem file reads with FOLL_FORCE, whatever the protection).
class ProcessPageSource final : public PageSource {
 public:
  static Result<std::unique_ptr<ProcessPageSource>> Open(pid_t pid);
  Status Read(const PagePiece* pieces, size_t n, char* dst) override;

 private:
  ProcessPageSource(pid_t pid, UniqueFd mem) : pid_(pid), mem_(std::move(mem)) {}
  Status ReadProcMem(uint64_t vaddr, uint64_t len, char* dst, int vm_readv_errno);
  pid_t pid_;
  UniqueFd mem_;
  std::vector<struct iovec> remote_;
};

// The ring is most of the dumper's own memory (cryo itself is ~10 MiB
// resident, most of it shared library and program text): 4 x 512 KiB, one
// transparent huge page, keeps its peak RSS near 12.5 MiB at any target size.
// Measured on 1 GiB (bench/README.md, "Page ring size" and branch cowsmall):
// 512 KiB buffers copy as fast as 1 MiB and 8 MiB ones within the noise;
// 256 KiB ones were slower on a quiet machine (more system calls and
// hand-overs per byte).
struct PageCopyOptions {
  size_t buffer_bytes = 512 << 10;  // a multiple of the page size
  size_t buffers = 4;             // >= 1; the ring is buffers * buffer_bytes
  // Write with O_DIRECT where the file allows it (direct_write.h): for a dump
  // that is made durable before anything else happens to the tree.
  bool direct = false;
};

// Copies `pieces` (PlanPages' result for `mm`) from `src` into `file` through
// the ring, setting the checksum (XXH3-64) of every page run of `mm`. Returns
// the first error of either stage; after an error the file is incomplete and
// nothing has been done to the source.
Status CopyPages(PageSource& src, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                 const ProgressFn& progress, const PageCopyOptions& opts = {});

// For a seized process: PlanPages from PAGEMAP_SCAN.
Result<std::vector<PagePiece>> PlanProcessPages(pid_t pid, image::Mm* mm, uint64_t block = 0);
// Copies the planned pages of a seized process into `file` (page data from
// kPageDataOffset on) through the ring; `direct`: PageCopyOptions::direct.
Status DumpPages(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                 const ProgressFn& progress, bool direct = false);
// Reads them into `data` instead (the page data, as it goes in the file from
// kPageDataOffset on), setting the runs' checksums: for a small process, whose
// page file is then written on the image writer's thread.
Status ReadPages(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, std::string* data);

}  // namespace cryo
