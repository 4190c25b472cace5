// Which pages of a range are present, swapped, file-backed or the zero page:
// the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7+), one call per batch of
// runs instead of 8 bytes read per page.
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
};

struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

class PagemapScanner {
 public:
  static Result<PagemapScanner> Open(pid_t pid);
  // Regions of [start, end) that are present or swapped, with their categories.
  Result<std::vector<PageRegion>> Scan(uint64_t start, uint64_t end);

 private:
  explicit PagemapScanner(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  UniqueFd fd_;
};

}  // namespace cryo
