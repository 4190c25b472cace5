// Copy-on-write end of a leave-running freeze (`cryo dump -R`): the private
// anonymous memory of a big process is copied after the tree runs again, as
// it was at the freeze.
//
// While the tree is frozen, a userfaultfd is made inside the process (a
// remote userfaultfd(2), taken out with pidfd_getfd(2) and closed there at
// once: mem/dirty_tracker.h does the same in WP_ASYNC mode), in plain
// synchronous write-protect mode: every private anonymous VMA holding pages
// to store is registered (UFFDIO_REGISTER_MODE_WP) and write-protected
// (UFFDIO_WRITEPROTECT); the pages of other VMAs (private file mappings'
// written pages) are read into memory then. Then the tree is resumed.
//
// After the resume, the page copy (CopyPages) reads through source(): each
// buffer is read from the process, then its pages' protection bits are
// checked (one PAGEMAP_SCAN). A page read whole keeps its protection: lifting
// it (a page table walk per buffer) is work the copy need not do; a later
// write to it faults and the fault thread lifts the protection of its whole
// 2 MiB block (what of it the copy has read), so an idle program costs
// nothing and a busy one a fault per block at most. A thread of cryo reads
// the userfaultfd meanwhile: a write to a page still protected stops its
// writer in the kernel (userspace writes and kernel writes alike: read(2)
// into a buffer, futex; the uffd is made without UFFD_USER_MODE_ONLY, whose
// kernel faults would be SIGBUS) until that thread has copied the page aside
// (mem/cow_aside.h: bounded, spilled to a file past 1 MiB) and lifted its
// protection (which wakes the writer).
//
// Why an image is the memory at the freeze, page for page: the protection
// bit of a page (PM_UFFD_WP in /proc/PID/pagemap) is only ever cleared after
// the freeze (cryo protects nothing later; a page made again after munmap or
// MADV_DONTNEED has it clear), and a page carrying it cannot have been
// written since. So bytes read from a page whose bit is still set after the
// read are the freeze's; a page whose bit is clear is taken from the copies
// made by the fault thread (which copied it while its writer was stopped,
// and kept it only if the bit was still set after that read).
//
// The program changing its mappings during the copy (userfaultfd(2)
// non-cooperative events, all three asked for):
// - mremap (UFFD_EVENT_REMAP): with the event asked for, the kernel moves
//   the pages with their protection bits and keeps the new VMA registered
//   (mm/mremap.c, move_ptes: the bits are cleared only without it). The
//   mremap caller waits until the event is read; the fault thread then reads
//   the moved pages not yet copied at their new address (their bit still
//   set: the freeze's), keyed by their old address, before it serves any
//   write there (a write at the new address waits for that thread). A
//   moved page keeps its bit wherever it lands, also onto protected pages
//   of other addresses not copied yet (two regions swapped): so the
//   destinations of the moves are remembered, and there the bits are not
//   trusted; what is stored for such an address is what was copied aside
//   when its own page moved away (else it was unmapped: lost). A move the
//   copy could miss (done, its event not handled yet) is waited for after
//   each buffer's bits are read: while an event is unread,
//   UFFDIO_WRITEPROTECT fails with EAGAIN (ctx->mmap_changing,
//   fs/userfaultfd.c), and the fault thread holds a lock from reading a
//   batch of messages until it has handled them.
// - MADV_DONTNEED/FREE (UFFD_EVENT_REMOVE): queued before the pages are
//   zapped, its caller waiting until it is read, and let go the moment it is
//   read (userfaultfd_ctx_read completes it); the event tells nothing before.
//   So before each read the fault thread looks for the discards pending in
//   the threads' syscall files and copies their pages aside first
//   (cow_discard.cc).
// - munmap (UFFD_EVENT_UNMAP, also mmap over memory, mremap shrinking, brk):
//   the event is queued after the pages are unmapped
//   (userfaultfd_unmap_complete): the content is gone before cryo can act.
//   So pages neither copied nor copied aside in such a range (or in a
//   discard begun after that look) are lost: the copy stops at once
//   (memory_changed()), the partial image is removed, and `cryo dump` makes
//   the whole dump again, the memory copied during the freeze (cli: a
//   consistent image of that later freeze). Keeping unmapped pages would
//   take a reference to them from the freeze on (a forked snapshot of the
//   process, or vmsplice(2) into pipes), which this design does not have.
// Without the events (an older kernel), the same losses are found when the
// copy reaches the pages (their bit clear, not copied aside), with the same
// outcome.
//
// cryo killed (-9 included): the uffd closes with it, the kernel unregisters
// the VMAs, lifts every protection and wakes the writers and the callers of
// munmap/madvise/mremap waiting on an event (fs/userfaultfd.c,
// userfaultfd_release).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "mem/cow_aside.h"
#include "mem/page_dump.h"
#include "proc/proc.h"

namespace cryo {

class SeizedProcess;

// The ranges of the madvise(2) calls that discard memory (MADV_DONTNEED,
// _LOCKED, MADV_FREE) the threads of `pid` are in now (/proc/PID/task/TID/
// syscall), page-aligned (cow_discard.cc).
Result<std::vector<std::pair<uint64_t, uint64_t>>> PendingDiscards(pid_t pid);

class CowCopy final : public PageSource {
 public:
  // During the freeze, before anything is protected: the userfaultfd, made
  // in the process (a remote call).
  static Result<std::unique_ptr<CowCopy>> Open(SeizedProcess& sp, const std::vector<proc::Vma>& vmas, uint64_t sig_ign,
                                               uint64_t sig_cgt);
  // Stops the fault thread; closing the userfaultfd lifts what protection is left.
  ~CowCopy() override;
  CowCopy(const CowCopy&) = delete;
  CowCopy& operator=(const CowCopy&) = delete;

  // The last step of the freeze, for the pages `pieces` (PlanPages' result
  // for `mm`): reads those outside private anonymous VMAs, registers and
  // protects those VMAs, starts the fault thread. After an error the caller
  // copies the pages during the freeze instead (and destroys this first).
  // `spill_dir`: where pages copied aside past the limit go (CowAside).
  Status Protect(const image::Mm& mm, const std::vector<PagePiece>& pieces, const std::string& spill_dir);

  // After the resume: the pages as they were at the freeze (PageSource), the
  // pages read lose their protection.
  Status Read(const PagePiece* pieces, size_t n, char* dst) override;

  // The fault thread's first error (the copy fails with it too).
  Status status();
  // The copy failed because the program unmapped or discarded memory cryo
  // had not copied yet: a dump without copy-on-write can be made instead.
  bool memory_changed() const { return memory_changed_.load(); }
  uint64_t fault_copies() const { return fault_copies_.load(); }
  uint64_t faults() const { return faults_.load(); }
  uint64_t remaps() const { return remaps_.load(); }
  uint64_t unmaps() const { return unmaps_.load(); }
  // Pages copied aside before an madvise discarded them (cow_discard.cc).
  uint64_t discard_copies() const { return discard_copies_.load(); }
  // Of the copies aside (under the lock, read once the copy is over).
  uint64_t aside_peak_memory();
  uint64_t aside_spilled();

 private:
  CowCopy(pid_t pid, UniqueFd uffd) : pid_(pid), uffd_(std::move(uffd)) {}
  void FaultLoop();
  void OnFault(uint64_t page);
  void OnRemap(uint64_t from, uint64_t to, uint64_t len);
  void OnUnmap(uint64_t start, uint64_t end, const char* how);
  void Fail(Status s, bool memory_changed);
  // cow_discard.cc: an event may be pending (the fault thread, before a read);
  // the pages of the discards pending now copied aside.
  bool MappingsChanging();
  void KeepPendingDiscards();
  Status KeepRange(uint64_t start, uint64_t end);
  bool Readable(uint64_t a) const;  // read with process_vm_readv, not /proc/PID/mem
  // Reads [vaddr, vaddr + len) (protected), checking each page's bit.
  Status ReadProtected(uint64_t vaddr, uint64_t len, bool readable, char* dst);
  // Reads [vaddr, vaddr + len) with `src`; good[i]: page i was read and
  // still carries its protection bit after the read (the freeze's bytes).
  Status ReadChecked(PageSource& src, uint64_t vaddr, uint64_t len, bool readable, char* dst,
                     std::vector<char>* good);
  Status CheckBits(uint64_t vaddr, size_t pages, std::vector<char>* good);
  Result<std::vector<uint64_t>> PagemapEntries(uint64_t vaddr, size_t pages);
  // *whole false: part of the range is not registered (ENOENT), and the
  // kernel may have stopped before the rest.
  // *again (if given): the mappings are changing (EAGAIN), nothing done.
  Status Unprotect(uint64_t vaddr, uint64_t len, bool* whole = nullptr, bool* again = nullptr);
  void Lift(uint64_t page, uint64_t lift, uint64_t lift_end);
  Status SettleMappingChanges();
  bool MovedIn(uint64_t page) const;  // under mu_
  bool Protected(uint64_t page) const;
  // The range of copied_ holding `page` (under mu_): {0, 0} if none.
  std::pair<uint64_t, uint64_t> CopiedRange(uint64_t page) const;
  void AddCopied(uint64_t start, uint64_t end);

  const pid_t pid_;
  UniqueFd uffd_;
  UniqueFd pagemap_;
  UniqueFd stop_;  // an eventfd: the fault thread ends when it is readable
  bool scan_ = true;  // PAGEMAP_SCAN works (else pagemap is read)
  std::unique_ptr<PageSource> reader_;        // the copy's
  std::unique_ptr<PageSource> fault_reader_;  // the fault thread's
  // Protected address ranges holding pages to store (ascending).
  std::vector<std::pair<uint64_t, uint64_t>> protected_;
  // Readable flag of the pieces (ascending by address): /proc/PID/mem or not.
  std::vector<PagePiece> pieces_;
  // Pages outside the protected ranges, read during the freeze (the copy's
  // alone): bounded in memory like the copies aside, the rest spilled.
  std::unique_ptr<CowAside> frozen_;
  std::mutex mu_;
  std::unique_ptr<CowAside> aside_;  // pages copied on a write fault (under mu_)
  // Protected ranges the copy has read and checked, start -> end (under mu_):
  // still protected until written; a fault there only lifts the protection.
  std::map<uint64_t, uint64_t> copied_;
  Status fault_error_;  // under mu_
  // Destinations of mremap during the copy (under mu_): the protected pages
  // there are other addresses' (cow_copy.cc, SettleMappingChanges).
  std::vector<std::pair<uint64_t, uint64_t>> moved_in_;
  std::mutex events_mu_;  // held by the fault thread from a read to its messages done
  uint64_t probe_ = 0;    // a page in no VMA (SettleMappingChanges)
  struct DeferredLift {
    uint64_t page, start, end;
  };
  std::vector<DeferredLift> deferred_lifts_;  // the fault thread's (EAGAIN)
  std::thread thread_;
  std::atomic<bool> memory_changed_{false};
  std::atomic<uint64_t> faults_{0}, fault_copies_{0}, remaps_{0}, unmaps_{0}, discard_copies_{0};
};

}  // namespace cryo
