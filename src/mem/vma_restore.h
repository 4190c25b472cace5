// The restore half of memory. In the restore helper (a fresh process with the
// target's PID but still cryo's address space), every VMA of the image is first
// built at a free "premap" address and filled from the page file, on several
// threads; the restorer blob later only mremaps each one into place.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_set>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/page_source.h"
#include "mem/thp.h"
#include "proc/proc.h"
#include "restorer/restorer_args.h"

namespace cryo {

// Whether the file behind a file mapping is opened for writing: a shared
// mapping that may write it, or a private one whose original file was open
// read-write (Vma.file_opened_rw: the kernel keeps the file's mode).
bool FileOpenedWritable(const image::Vma& v);
// VMAs the restorer recreates (not the vDSO family, not [vsyscall]).
bool IsPremapped(const image::Vma& v);
// The mmap(2) flags that recreate `v` (but MAP_FIXED and MAP_ANONYMOUS): its
// type (MAP_SHARED, MAP_PRIVATE or MAP_DROPPABLE), MAP_GROWSDOWN, and
// MAP_NORESERVE for VmFlags "nr".
int MapFlags(const image::Vma& v);
// Bytes of address space the premaps need (VMAs plus a guard page each);
// `huge_vmas` is VmasWithHugeRanges(mm) (thp.h).
uint64_t PremapSize(const image::Mm& mm, const std::vector<bool>& huge_vmas);

// Finds a free range of `len` bytes that overlaps neither `a` nor `b`.
Result<uint64_t> FindGap(const std::vector<std::pair<uint64_t, uint64_t>>& used, uint64_t len);

// A private anonymous VMA as a restore helper premapped it: a child helper
// inherits it by fork and takes over the pages it shares with its parent.
struct InheritableVma {
  uint64_t start = 0, end = 0;  // its final address
  uint64_t premap = 0;          // where it is premapped
};

// Maps every premapped VMA inside [base, base + PremapSize) (reserved PROT_NONE
// by the caller), fills it from `pages` (mm.parent_runs from
// `parents[depth - 1]`, the ancestors' page files) with `threads` threads, checks each
// page run's checksum, and applies the final protection and the madvise flags
// (but MADV_DONTFORK and MADV_WIPEONFORK, see ApplyForkAdvice). Appends one
// move per VMA to `moves`, in the order of mm.vmas().
// `shmem_fd(id)` gives an fd on the shmem object of a shared anonymous VMA
// (already filled), or -1. `map_shm(vma, at, prot)` maps a VMA of a memfd,
// /dev/shm file or SysV segment (Vma.shm_object) at `at`.
// A VMA with pages in mm.inherited() takes its premapped place in
// `from_parent` over (pages outside mm.inherited() are dropped there, the
// VMA's own stored pages written). `inheritable` receives this process's
// private anonymous VMAs, for its own children.
// `lazy` (cryo restore --lazy, mem/lazy_plan.h): page runs left out, to be
// fetched on first touch; a VMA whose runs are all lazy stays unpopulated.
// The ranges of mm.huge_ranges are made huge pages again before the fill
// where the system allows (thp.h), counted in `huge`; `huge_vmas` is
// VmasWithHugeRanges(mm), as given to PremapSize; MADV_HUGEPAGE and
// MADV_NOHUGEPAGE of such a VMA are applied after the fill (not in a VMA
// with lazy pages: the collapse would make them present).
using MapShmFn = std::function<Status(const image::Vma&, uint64_t, int)>;
Status PremapAndFill(const image::Mm& mm, const std::vector<bool>& huge_vmas, const image::PageSource& pages,
                     const std::vector<const image::PageSource*>& parents, uint64_t base, int threads,
                     const std::function<int(uint64_t)>& shmem_fd, const std::vector<InheritableVma>& from_parent,
                     std::vector<restorer::Move>* moves, std::vector<InheritableVma>* inheritable,
                     const MapShmFn& map_shm = nullptr, const std::unordered_set<const image::PageRun*>* lazy = nullptr,
                     HugeCount* huge = nullptr);

// Before cloning children: marks MADV_DONTFORK every premapped VMA (`moves`)
// that holds none of `wanted` (the pages the children inherit), so fork(2)
// does not copy page tables nobody uses. ApplyForkAdvice undoes it.
Status HideFromChildren(const std::vector<restorer::Move>& moves, const std::vector<image::PageRange>& wanted);
// After cloning children: every premapped VMA gets the image's fork advice
// (MADV_DONTFORK / MADV_WIPEONFORK where smaps said "dc" / "wf", else
// MADV_DOFORK).
Status ApplyForkAdvice(const image::Mm& mm, const std::vector<restorer::Move>& moves);

// The [vvar]/[vvar_vclock]/[vdso] moves from the helper's own mappings to the
// image's addresses; refuses a layout that differs from the image's.
Status PlanSpecialMoves(const image::Mm& mm, const std::vector<proc::Vma>& own, std::vector<restorer::Move>* moves);

}  // namespace cryo
