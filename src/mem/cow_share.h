// Private anonymous pages a child still shares copy-on-write with its parent
// (a fork(2) copies page tables, not pages): found by comparing the page frame
// numbers /proc/PID/pagemap gives each (visible with CAP_SYS_ADMIN,
// Documentation/admin-guide/mm/pagemap.rst). Such pages are stored once, in
// the parent's image, and the restore lets the child inherit them again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/pagemap_scan.h"

namespace cryo {

// The ranges of `child`'s private anonymous VMAs whose present pages are the
// very pages `parent` maps at the same address, inside a private anonymous VMA
// of the parent. Both processes must be frozen. In address order.
Result<std::vector<image::PageRange>> FindInheritedPages(pid_t child, const image::Mm& child_mm, pid_t parent,
                                                         const image::Mm& parent_mm);

// `regions` without the pages of `skip` (both in address order).
std::vector<PageRegion> WithoutRanges(const std::vector<PageRegion>& regions,
                                      const std::vector<image::PageRange>& skip);

}  // namespace cryo
