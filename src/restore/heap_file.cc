#include "restore/heap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "proc/proc.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;

struct Range {
  uint64_t start, len;
};

bool SingleThreaded() {
  auto status = ReadFileToString("/proc/self/status");
  return status.ok() && status->find("\nThreads:\t1\n") != std::string::npos;
}

// Writes the pages of [r.start, r.start + r.len) that hold anything to `fd`
// at `off`: those present or swapped out (/proc/self/pagemap bits 63 and 62,
// Documentation/admin-guide/mm/pagemap.rst). A page never touched stays a
// hole of the file, which reads as zero, as the page did.
bool CopyUsedPages(int fd, int pagemap, const Range& r, uint64_t off, uint64_t* entries) {
  const uint64_t pages = r.len / kPage;
  const off_t at = static_cast<off_t>(r.start / kPage * sizeof(uint64_t));
  if (::pread(pagemap, entries, pages * sizeof(uint64_t), at) != static_cast<ssize_t>(pages * sizeof(uint64_t)))
    return false;
  auto used = [entries](uint64_t i) { return (entries[i] >> 62) != 0; };
  for (uint64_t i = 0; i < pages;) {
    if (!used(i)) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < pages && used(j)) ++j;
    const char* from = reinterpret_cast<const char*>(r.start + i * kPage);
    uint64_t done = 0, want = (j - i) * kPage;
    while (done < want) {
      const ssize_t n = ::pwrite(fd, from + done, want - done, static_cast<off_t>(off + i * kPage + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<uint64_t>(n);
    }
    i = j;
  }
  return true;
}

// The ranges moved, for TakeBackHeap.
std::vector<Range>& MovedRanges() {
  static std::vector<Range> moved;
  return moved;
}

}  // namespace

Result<uint64_t> MoveHeapToFile() {
  if (!SingleThreaded()) return Status::Error("cryo runs more than one thread");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/maps"));
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::Vma> vmas, proc::ParseMaps(text));
  std::vector<Range> heap;
  uint64_t total = 0, longest = 0;
  for (const proc::Vma& v : vmas) {
    if (v.name != "[heap]" || v.shared || v.prot != (PROT_READ | PROT_WRITE)) continue;
    heap.push_back({v.start, v.end - v.start});
    total += v.end - v.start;
    longest = std::max(longest, v.end - v.start);
  }
  if (heap.empty()) return uint64_t{0};
  UniqueFd fd(::memfd_create("cryo-heap", MFD_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("memfd_create for cryo's heap");
  if (::ftruncate(fd.get(), static_cast<off_t>(total)) != 0) return Status::FromErrno("sizing cryo's heap file");
  UniqueFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) return Status::FromErrno("opening /proc/self/pagemap");
  std::vector<uint64_t> entries(longest / kPage);
  MovedRanges().reserve(heap.size());
  // From the copy of a range to its remapping nothing may allocate or free (a
  // change of the heap in between would be lost): plain system calls only.
  uint64_t off = 0;
  for (const Range& r : heap) {
    if (!CopyUsedPages(fd.get(), pagemap.get(), r, off, entries.data()))
      return Status::FromErrno("copying cryo's heap at " + std::to_string(r.start) + " to its file");
    if (::mmap(reinterpret_cast<void*>(r.start), r.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd.get(),
               static_cast<off_t>(off)) == MAP_FAILED)
      return Status::FromErrno("mapping cryo's heap file over its heap");
    MovedRanges().push_back(r);
    off += r.len;
  }
  return total;
}

void TakeBackHeap() {
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE (Linux 5.14)
  for (const Range& r : MovedRanges()) (void)::madvise(reinterpret_cast<void*>(r.start), r.len, kPopulateWrite);
  MovedRanges().clear();
}

}  // namespace cryo
