// Transparent huge pages (THP) of private anonymous memory, dump and restore.
//
// Dump: the 2 MiB ranges the kernel mapped with a huge page (one PMD entry)
// are PAGEMAP_SCAN's PAGE_IS_HUGE regions; they become Mm.huge_ranges.
//
// Restore: such a VMA is premapped at an address congruent to its final one
// modulo 2 MiB, so that the restorer's mremap moves whole PMD entries (an
// unaligned move splits every huge PMD into 512 PTEs: move_page_tables() in
// mm/mremap.c). Before the fill, each recorded range gets one write fault and
// MADV_COLLAPSE (Linux 6.1+), which makes it a huge page without changing the
// VMA's flags (MADV_HUGEPAGE would show as VmFlags "hg", which madvise cannot
// take back without setting "nh" instead); the fill then copies into it
// without one fault per 4 KiB page. Only where the system allows THP
// (/sys/kernel/mm/transparent_hugepage/enabled not "never"): MADV_COLLAPSE
// itself ignores that setting (Documentation/admin-guide/mm/transhuge.rst).
// A range the kernel cannot make huge (no free huge page, ...) stays small
// pages: the same contents.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/pagemap_scan.h"

namespace cryo {

inline constexpr uint64_t kHugePageSize = 2ull << 20;  // x86-64 PMD

// Appends to mm.huge_ranges the huge regions of `regions` (ascending, from
// PagemapScanner::Scan) that lie in mm's private anonymous VMAs.
void RecordHugeRanges(const std::vector<PageRegion>& regions, image::Mm* mm);

// For each VMA of mm.vmas(), whether it is private anonymous memory holding
// a range of mm.huge_ranges (its premap is then aligned). One walk of both
// lists (ascending, image/validate_mm.cc), made once per process for the
// premap's size and its layout, which must agree.
std::vector<bool> VmasWithHugeRanges(const image::Mm& mm);

// The premap address for `v` at or after `slot`: congruent to v.start()
// modulo kHugePageSize when `aligned` (at most kHugePageSize - 4096 later).
uint64_t PremapAddress(uint64_t slot, const image::Vma& v, bool aligned);

// Whether THP may be used: the `enabled` setting's text ("always [madvise]
// never") does not select "never"; false when empty (no THP support).
bool ThpEnabledText(std::string_view enabled);
// ThpEnabledText of this system's setting, and MADV_COLLAPSE not pretended
// missing (CRYO_PRETEND_MISSING=madv-collapse).
bool ThpAllowed();

// Counts of MakeHuge calls: ranges of 2 MiB asked for, made huge, and the
// time they took.
struct HugeCount {
  uint64_t asked = 0, made = 0;
  double seconds = 0;
};

// Makes each 2 MiB range of mm.huge_ranges inside `v`, premapped at `at`
// (readable and writable, empty), a huge page. Failing ranges stay small.
HugeCount MakeHuge(const image::Mm& mm, const image::Vma& v, uint64_t at);

}  // namespace cryo
