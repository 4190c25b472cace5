// Which pages of a range are present, swapped, file-backed or the zero page.
// Two ways to ask, with the same answer: the PAGEMAP_SCAN ioctl on
// /proc/PID/pagemap (Linux 6.7+), one call per batch of runs; or, on older
// kernels (or with CRYO_PRETEND_MISSING=pagemap-scan), reading the 64-bit
// pagemap entries themselves in large batches
// (Documentation/admin-guide/mm/pagemap.rst).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace cryo {

enum PageCategory : uint64_t {
  kPageWritten = 1 << 1,
  kPageFile = 1 << 2,
  kPagePresent = 1 << 3,
  kPageSwapped = 1 << 4,
  kPagePfnZero = 1 << 5,
  kPageHuge = 1 << 6,  // a PMD-mapped transparent huge page (PAGEMAP_SCAN only; never from kRead)
  // A guard region's page (MADV_GUARD_INSTALL): PAGE_IS_GUARD of PAGEMAP_SCAN,
  // pagemap bit 58, both since Linux 6.15. The kernel reports it as swapped
  // too (the guard is a PTE marker, a swap entry): it holds no content.
  kPageGuard = 1 << 8,
};

struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
  bool operator==(const PageRegion&) const = default;
};

// The categories PAGEMAP_SCAN would report for one /proc/PID/pagemap entry:
// bit 63 present, 62 swapped, 61 file page or shared anonymous (not
// PageAnon, as PAGE_IS_FILE), bits 0-54 the frame number (0 without
// CAP_SYS_ADMIN), 58 guard region. `zero_pfn` is the shared zero page's frame (0: unknown).
uint64_t PagemapEntryCategories(uint64_t entry, uint64_t zero_pfn);

// The shared zero page's frame as /proc/PID/pagemap shows it; 0 when it is
// not visible (no CAP_SYS_ADMIN) or this kernel maps no zero page on a read
// fault of private anonymous memory (each read then gets a page of its own).
uint64_t ZeroPfn();

// Whether this kernel's pagemap tells guard pages apart, by the way
// PagemapScanner::Open(pid) will read it (PAGEMAP_SCAN, or pagemap with
// CRYO_PRETEND_MISSING=pagemap-scan): probed once on a page of cryo's own.
// True on a kernel without guard regions (MADV_GUARD_INSTALL, Linux 6.13):
// there are none to miss.
bool GuardRegionsVisible();
// Whether MADV_GUARD_INSTALL exists (Linux 6.13).
bool KernelHasGuardRegions();

class PagemapScanner {
 public:
  enum class Method { kIoctl, kRead };
  // kIoctl when the kernel has PAGEMAP_SCAN (tried at once) and it is not
  // pretended missing; else kRead.
  static Result<PagemapScanner> Open(pid_t pid);
  static Result<PagemapScanner> Open(pid_t pid, Method method);
  // Regions of [start, end) that are present or swapped, with their categories.
  // With kRead, [start, end) should hold no hole between VMAs: a hole is
  // read entry by entry (8 bytes a page) like mapped memory.
  Result<std::vector<PageRegion>> Scan(uint64_t start, uint64_t end);
  // The same for private anonymous memory: kPageFile is not asked for (the
  // kernel then does not look at each present page's struct page, which
  // costs ~30 ms per GiB; fs/proc/task_mmu.c pagemap_page_category).
  Result<std::vector<PageRegion>> ScanAnon(uint64_t start, uint64_t end);
  Method method() const { return method_; }
  // Whether Scan marks guard pages kPageGuard; false on a kernel whose
  // pagemap does not tell them (before 6.15), where one looks swapped.
  bool reports_guards() const;

 private:
  PagemapScanner(pid_t pid, UniqueFd fd, Method method) : pid_(pid), fd_(std::move(fd)), method_(method) {}
  Result<std::vector<PageRegion>> ScanIoctl(uint64_t start, uint64_t end, bool with_file = true);
  Result<std::vector<PageRegion>> ScanRead(uint64_t start, uint64_t end);
  pid_t pid_;
  UniqueFd fd_;
  Method method_;
};

}  // namespace cryo
