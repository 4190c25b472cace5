// Pre-copy rounds that copy while the tree runs (dump/precopy.h): a round's
// freeze only reads the VMAs and the task state and arms (or collects) the
// write-protect tracking (mem/dirty_tracker.h); its pages are read once the
// tree runs again, with process_vm_readv(2) / /proc/PID/mem.
//
// Why that loses nothing: the tracking protects every page before the round
// reads it (DirtyTracking::Prepare, during the freeze), so a page written
// after the protection, also one written while the copy reads it, has lost its
// protection and is named written by the next round's PAGEMAP_SCAN, which
// reads it again. A page the next round takes from this one unread keeps the
// protection bit it got at this round's freeze: nothing else sets it (only
// cryo's UFFDIO_WRITEPROTECT and PAGEMAP_SCAN, during freezes), a write
// clears it before the bytes change (mm/memory.c, do_wp_page with
// userfaultfd_wp_async), and the tracker does not ask for
// UFFD_FEATURE_EVENT_REMAP, so mremap clears the bits of the pages it moves
// and unregisters the VMA it makes (mm/mremap.c, move_ptes;
// mremap_userfaultfd_prep); a VMA mapped anew is registered with nothing and
// fails PM_SCAN_CHECK_WPASYNC (EPERM): compared. So the page mapped there
// when this round read it was that same protected page, with the bytes it had
// at the freeze. What the copy could not read (a VMA unmapped meanwhile) is
// stored as zeros and named: the next round never takes those runs unread
// (ParentProcessPages::unread), it compares them or reads them again. Such a
// round is a parent only: feature "live-copied-pages", which restore refuses
// in the image it is asked to restore.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "base/status.h"
#include "mem/page_dump.h"

namespace cryo {

// The memory of a running process. A batch that cannot be read whole is read
// again piece by piece, then page by page; a page that cannot be read at all
// is zeros and named in unread(); once the process is gone (it exited during
// the copy), every page left is.
class LivePageSource final : public PageSource {
 public:
  static Result<std::unique_ptr<LivePageSource>> Open(pid_t pid);
  Status Read(const PagePiece* pieces, size_t n, char* dst) override;
  // Address ranges read as zeros because they could not be read (ascending).
  const std::vector<std::pair<uint64_t, uint64_t>>& unread() const { return unread_; }

 private:
  LivePageSource(pid_t pid, std::unique_ptr<ProcessPageSource> inner) : pid_(pid), inner_(std::move(inner)) {}
  Status ReadPiece(const PagePiece& p, char* dst);
  void Unread(uint64_t vaddr, uint64_t len, char* dst);
  pid_t pid_;
  bool gone_ = false;
  std::unique_ptr<ProcessPageSource> inner_;
  std::vector<std::pair<uint64_t, uint64_t>> unread_;
};

// Tests only (tests/e2e/test_precopy.py): with CRYO_TEST_PRECOPY_HOLD=PATH,
// a round whose copy is done waits while PATH exists (at most 60 s), having
// created PATH.held: the test sees the program run meanwhile.
void LiveCopyTestHold();

}  // namespace cryo
