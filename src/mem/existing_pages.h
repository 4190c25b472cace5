// Post-copy migration with unplanned VMAs (cryo migrate --lazy, feature
// "remote-vmas"): the dump does not look for the pages of a process's
// private anonymous VMAs while the tree is frozen (their page planning grows
// with the memory); the target asks the source which of them exist once it
// restores, and the source answers from the frozen process's page tables.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/pagemap_scan.h"

namespace cryo {

// The pages of [start, end) (a private anonymous VMA of the stopped process
// `pid`) that hold something: present or swapped out, not the zero page
// (PAGEMAP_SCAN, or pagemap read entry by entry), as ascending (vaddr, bytes).
// A page absent there reads as zero in the process, so the target maps the
// zero page for it. A guard page there is an error (the VMA's pages should
// have been planned).
Result<std::vector<std::pair<uint64_t, uint64_t>>> ExistingAnonPages(pid_t pid, uint64_t start, uint64_t end);
// The same from a scan's regions (present or swapped pages, categories).
Result<std::vector<std::pair<uint64_t, uint64_t>>> ExistingInRegions(const std::vector<PageRegion>& regions,
                                                                     uint64_t start, uint64_t end);

// Whether the dump may leave the pages of `v` unplanned (post-copy): a VMA a
// lazy restore fetches (LazyEligibleVma) that can hold no guard region
// (MADV_GUARD_INSTALL markers are found by the planning): on a kernel with
// guard regions only when its smaps shows VmFlags "gu" and `v` has none.
bool MayLeaveUnplanned(const image::Vma& v);

}  // namespace cryo
