// The PAGEMAP_SCAN ioctl's argument (include/uapi/linux/fs.h, Linux 6.7),
// defined here because Debian 12's headers predate it; the kernel decides at
// run time (an older one answers ENOTTY).
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace cryo {

struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
inline constexpr unsigned long kPagemapScanIoctl = _IOWR('f', 16, PmScanArg);

// struct page_region: one run of pages with the same categories.
struct PmPageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

}  // namespace cryo
