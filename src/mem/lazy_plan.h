// What a lazy restore (cryo restore --lazy) leaves out of the premapped memory,
// to be fetched on first touch through userfaultfd (mem/lazy_server.h).
//
// Lazy are the page runs of private anonymous VMAs (this image's page file or
// an ancestor's, Mm.parent_runs) that no child of the process inherits. The
// rest stays eager, filled before the tree runs: shared memory and file
// mappings (their pages live in a shared object or the page cache), pages a
// child shares copy-on-write (a fetch into one process would unshare them),
// mlocked VMAs (mlock populates them with zero pages before the blob could
// register them), VMAs with MADV_WIPEONFORK (a child forked during the lazy
// phase must see them zero, not fetched), MAP_DROPPABLE ones (userfaultfd
// refuses them, vma_can_userfault in include/linux/userfaultfd_k.h), hugetlb
// and sealed (mseal) VMAs.
#pragma once

#include <linux/userfaultfd.h>
#include <sys/types.h>

#include <cstdint>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

// The userfaultfd events a lazy restore follows (mem/lazy_server.h): a fork
// gives the child a userfaultfd of its own, an mremap moves pages still
// missing, MADV_DONTNEED/MADV_FREE and munmap drop them (they read back zero).
inline constexpr uint64_t kLazyUffdFeatures =
    UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

struct LazyPlan {
  // The VMAs (final addresses) registered with the process's userfaultfd
  // (UFFDIO_REGISTER_MODE_MISSING): every one that has a lazy run.
  std::vector<std::pair<uint64_t, uint64_t>> vmas;
  // The lazy runs, in address order (Mm.runs and Mm.parent_runs).
  std::vector<const image::PageRun*> runs;
  std::unordered_set<const image::PageRun*> set;  // the same, for lookups
  // (post-copy, feature "remote-vmas") the VMAs among `vmas` whose pages the
  // dump did not look for (Vma.remote_unplanned): the server asks the source
  // which of their pages exist (RemotePageSource::Map).
  std::vector<std::pair<uint64_t, uint64_t>> unplanned;
  bool empty() const { return runs.empty() && vmas.empty(); }
  uint64_t pages() const;
};

// Whether the pages of `v` may be fetched lazily.
bool LazyEligibleVma(const image::Vma& v);
LazyPlan PlanLazy(const image::Mm& mm, const std::vector<image::PageRange>& inherited_by_children);

}  // namespace cryo
