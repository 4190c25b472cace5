// Guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13): pages of a VMA whose
// page table holds a guard marker instead of a page, so that touching them
// raises SIGSEGV. They are no VMA of their own (smaps shows VmFlags "gu" on a
// VMA that may hold some): the dump finds them in pagemap (PAGE_IS_GUARD of
// PAGEMAP_SCAN, bit 58 of an entry, Linux 6.15) and records them in
// Mm.guard_regions (feature "guard-regions"); the restore installs them again
// on the premapped VMA once its content is in. mremap(2) moves the markers
// with the page tables, and fork(2) copies them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/pagemap_scan.h"

namespace cryo {

// Moves the guard pages out of `regions` (found by `scanner` over the VMAs
// for which `scanned` is true; a guard page is also reported swapped, and has
// no content to read) into mm->guard_regions, then scans the other VMAs with
// VmFlags "gu" for theirs. Refuses, naming the VMA, a VMA with "gu" when this
// kernel's pagemap does not tell guard pages apart.
Status TakeGuardRegions(pid_t pid, PagemapScanner& scanner, const std::function<bool(const image::Vma&)>& scanned,
                        std::vector<PageRegion>* regions, image::Mm* mm);

// Installs the guard regions of `v` (image addresses) on its copy premapped
// at `at`.
Status InstallGuardRegions(const image::Mm& mm, const image::Vma& v, uint64_t at);

// Removes every guard marker of [at, at + len): a VMA taken over from the
// parent's premap inherited the parent's markers by fork. Nothing to do on a
// kernel without guard regions.
Status ClearGuardRegions(const image::Vma& v, uint64_t at, uint64_t len);

}  // namespace cryo
