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
// buffer is read from the process, then unprotected. A thread of cryo reads
// the userfaultfd meanwhile: a write to a page still protected stops its
// writer in the kernel (userspace writes and kernel writes alike: read(2)
// into a buffer, futex; the uffd is made without UFFD_USER_MODE_ONLY, whose
// kernel faults would be SIGBUS) until that thread has copied the page aside
// and lifted its protection (which wakes the writer).
//
// Why an image is the memory at the freeze, page for page: the protection
// bit of a page (PM_UFFD_WP in /proc/PID/pagemap) is only ever cleared after
// the freeze (cryo protects nothing later; a page moved by mremap or made
// again after munmap or MADV_DONTNEED has it clear), and a page carrying it
// cannot have been written since. So bytes read from a page whose bit is
// still set after the read are the freeze's; a page whose bit is clear is
// taken from the copies made by the fault thread (which copied it while its
// writer was stopped, and kept it only if the bit was still set after that
// read). A page in neither (the program unmapped or discarded memory cryo
// had not copied yet) fails the dump: the image is removed and the tree runs
// on.
//
// cryo killed (-9 included): the uffd closes with it, the kernel unregisters
// the VMAs, lifts every protection and wakes the writers
// (fs/userfaultfd.c, userfaultfd_release).
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
#include "mem/page_dump.h"
#include "proc/proc.h"

namespace cryo {

class SeizedProcess;

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
  Status Protect(const image::Mm& mm, const std::vector<PagePiece>& pieces);

  // After the resume: the pages as they were at the freeze (PageSource), the
  // pages read lose their protection.
  Status Read(const PagePiece* pieces, size_t n, char* dst) override;

  // The fault thread's first error (the copy fails with it too).
  Status status();
  uint64_t fault_copies() const { return fault_copies_.load(); }
  uint64_t faults() const { return faults_.load(); }

 private:
  CowCopy(pid_t pid, UniqueFd uffd) : pid_(pid), uffd_(std::move(uffd)) {}
  void FaultLoop();
  void OnFault(uint64_t page);
  // Reads [vaddr, vaddr + len) (protected), checking each page's bit.
  Status ReadProtected(uint64_t vaddr, uint64_t len, bool readable, char* dst);
  Result<std::vector<uint64_t>> PagemapEntries(uint64_t vaddr, size_t pages);
  Status Unprotect(uint64_t vaddr, uint64_t len);
  Status FlushVerified();
  bool Protected(uint64_t page) const;

  const pid_t pid_;
  UniqueFd uffd_;
  UniqueFd pagemap_;
  UniqueFd stop_;  // an eventfd: the fault thread ends when it is readable
  std::unique_ptr<PageSource> reader_;        // the copy's
  std::unique_ptr<PageSource> fault_reader_;  // the fault thread's
  // Protected address ranges holding pages to store (ascending).
  std::vector<std::pair<uint64_t, uint64_t>> protected_;
  // Readable flag of the pieces (ascending by address): /proc/PID/mem or not.
  std::vector<PagePiece> pieces_;
  // Pages outside the protected ranges, read during the freeze: start -> bytes.
  std::map<uint64_t, std::string> frozen_;
  std::mutex mu_;
  std::map<uint64_t, std::string> copied_;  // pages copied on a write fault (under mu_)
  // Pages copied (their bytes checked) but still protected (written by the
  // copy under mu_, read by the fault thread): a fault there is let through.
  std::pair<uint64_t, uint64_t> verified_{0, 0};
  Status fault_error_;                      // under mu_
  std::thread thread_;
  std::atomic<uint64_t> faults_{0}, fault_copies_{0};
};

}  // namespace cryo
