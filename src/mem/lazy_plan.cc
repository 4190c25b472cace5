#include "mem/lazy_plan.h"

#include <algorithm>
#include <string>

#include "image/format.h"
#include "mem/vma_dump.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

bool HasFlag(const image::Vma& v, const char* flag) {
  return std::find(v.vm_flags().begin(), v.vm_flags().end(), flag) != v.vm_flags().end();
}

bool Overlaps(const image::PageRun& r, const std::vector<image::PageRange>& ranges) {
  const uint64_t end = r.vaddr() + r.npages() * kPage;
  for (const image::PageRange& w : ranges)
    if (w.vaddr() < end && r.vaddr() < w.vaddr() + w.npages() * kPage) return true;
  return false;
}

}  // namespace

uint64_t LazyPlan::pages() const {
  uint64_t n = 0;
  for (const image::PageRun* r : runs) n += r->npages();
  return n;
}

bool LazyEligibleVma(const image::Vma& v) {
  // Hugetlb pages ("ht") would need UFFDIO_COPY of whole huge pages; sealed
  // VMAs ("sl") stay as simple as possible.
  return v.kind() == image::VMA_ANON_PRIVATE && (v.flags() & 0x0f) != kMapDroppable && !HasFlag(v, "lo") &&
         !HasFlag(v, "wf") && !HasFlag(v, "ht") && !HasFlag(v, "sl") && !v.shm_object() && !v.unlinked_file();
}

LazyPlan PlanLazy(const image::Mm& mm, const std::vector<image::PageRange>& inherited_by_children) {
  LazyPlan plan;
  std::vector<const image::PageRun*> all;
  for (const image::PageRun& r : mm.runs()) all.push_back(&r);
  for (const image::PageRun& r : mm.parent_runs()) all.push_back(&r);
  std::sort(all.begin(), all.end(), [](auto* a, auto* b) { return a->vaddr() < b->vaddr(); });
  size_t i = 0;
  for (const image::Vma& v : mm.vmas()) {
    while (i < all.size() && all[i]->vaddr() < v.start()) ++i;
    bool any = false;
    for (; i < all.size() && all[i]->vaddr() < v.end(); ++i) {
      if (!LazyEligibleVma(v) || Overlaps(*all[i], inherited_by_children)) continue;
      plan.runs.push_back(all[i]);
      plan.set.insert(all[i]);
      any = true;
    }
    // An unplanned VMA (post-copy) has no runs and is lazy all the same: its
    // pages are on the source (never zeros because the image lists none).
    const bool unplanned = v.remote_unplanned() && LazyEligibleVma(v);
    if (any || unplanned) plan.vmas.emplace_back(v.start(), v.end());
    if (unplanned) plan.unplanned.emplace_back(v.start(), v.end());
  }
  return plan;
}

}  // namespace cryo
