#include "mem/thp.h"

#include <errno.h>
#include <sys/mman.h>

#include <algorithm>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/kernel_features.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace cryo {

namespace {

// The huge ranges inside [start, end), clipped.
template <typename Fn>
void ForEachHugeRange(const image::Mm& mm, uint64_t start, uint64_t end, Fn fn) {
  for (const image::PageRange& r : mm.huge_ranges()) {
    const uint64_t s = std::max(start, r.vaddr()), e = std::min(end, r.vaddr() + r.npages() * 4096);
    if (s < e) fn(s, e);
  }
}

}  // namespace

void RecordHugeRanges(const std::vector<PageRegion>& regions, image::Mm* mm) {
  auto it = regions.begin();
  for (const image::Vma& v : mm->vmas()) {
    if (v.kind() != image::VMA_ANON_PRIVATE || v.huge_page_size() != 0) continue;  // hugetlb is not THP
    while (it != regions.end() && it->end <= v.start()) ++it;
    for (auto r = it; r != regions.end() && r->start < v.end(); ++r) {
      // The huge zero page (a read fault under THP) holds nothing to restore.
      if (!(r->categories & kPageHuge) || (r->categories & kPagePfnZero)) continue;
      // Whole huge pages only (a PMD maps an aligned 2 MiB).
      const uint64_t s = (std::max(r->start, v.start()) + kHugePageSize - 1) & ~(kHugePageSize - 1);
      const uint64_t e = std::min(r->end, v.end()) & ~(kHugePageSize - 1);
      if (s >= e) continue;
      const int n = mm->huge_ranges_size();
      image::PageRange* last = n ? mm->mutable_huge_ranges(n - 1) : nullptr;
      if (last && last->vaddr() >= v.start() && last->vaddr() + last->npages() * 4096 == s) {  // one VMA's
        last->set_npages(last->npages() + (e - s) / 4096);
      } else {
        image::PageRange* nr = mm->add_huge_ranges();
        nr->set_vaddr(s);
        nr->set_npages((e - s) / 4096);
      }
    }
  }
}

std::vector<bool> VmasWithHugeRanges(const image::Mm& mm) {
  std::vector<bool> out(static_cast<size_t>(mm.vmas_size()), false);
  const int n = mm.huge_ranges_size();
  int h = 0;  // the first range that ends after the VMAs before
  for (int i = 0; i < mm.vmas_size(); ++i) {
    const image::Vma& v = mm.vmas(i);
    auto range_end = [&mm](int k) { return mm.huge_ranges(k).vaddr() + mm.huge_ranges(k).npages() * 4096; };
    while (h < n && range_end(h) <= v.start()) ++h;
    if (v.kind() != image::VMA_ANON_PRIVATE) continue;
    for (int k = h; k < n && mm.huge_ranges(k).vaddr() < v.end(); ++k) {
      if (std::max(v.start(), mm.huge_ranges(k).vaddr()) < std::min(v.end(), range_end(k))) {
        out[static_cast<size_t>(i)] = true;
        break;
      }
    }
  }
  return out;
}

uint64_t PremapAddress(uint64_t slot, const image::Vma& v, bool aligned) {
  if (!aligned) return slot;
  const uint64_t mask = kHugePageSize - 1;
  return slot + ((v.start() - slot) & mask);
}

bool ThpEnabledText(std::string_view enabled) {
  return !enabled.empty() && enabled.find("[never]") == std::string_view::npos;
}

bool ThpAllowed() {
  if (PretendMissing("madv-collapse")) return false;
  auto text = ReadFileToString("/sys/kernel/mm/transparent_hugepage/enabled");
  return text.ok() && ThpEnabledText(*text);
}

HugeCount MakeHuge(const image::Mm& mm, const image::Vma& v, uint64_t at) {
  HugeCount n;
  const double start = Now();
  bool collapse_missing = false;
  ForEachHugeRange(mm, v.start(), v.end(), [&](uint64_t s, uint64_t e) {
    const uint64_t huge = (e - s) / kHugePageSize;
    n.asked += huge;
    if (collapse_missing || huge == 0) return;
    char* p = reinterpret_cast<char*>(at + (s - v.start()));
    // One write fault per 2 MiB: MADV_COLLAPSE wants a page table with a
    // present page in the range (on a range with none it fails, EINVAL).
    for (uint64_t i = 0; i < huge; ++i) *reinterpret_cast<volatile char*>(p + i * kHugePageSize) = 0;
    // One call for the whole range: each call drains every CPU's LRU
    // batches first (lru_add_drain_all() in madvise_collapse(),
    // mm/khugepaged.c), which costs milliseconds on a busy machine.
    if (::madvise(p, huge * kHugePageSize, MADV_COLLAPSE) == 0) {
      n.made += huge;
      return;
    }
    if (errno == EINVAL) {
      collapse_missing = true;  // before Linux 6.1, or no THP: small pages, as before
      return;
    }
    // EAGAIN, ENOMEM (no huge page free now): some ranges stay small pages.
    // Counted one by one (a range already huge succeeds at once).
    for (uint64_t i = 0; i < huge; ++i) n.made += ::madvise(p + i * kHugePageSize, kHugePageSize, MADV_COLLAPSE) == 0;
  });
  n.seconds = Now() - start;
  return n;
}

}  // namespace cryo
