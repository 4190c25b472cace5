// The restore half of memory. In the restore helper (a fresh process with the
// target's PID but still cryo's address space), every VMA of the image is first
// built at a free "premap" address and filled from the page file, on several
// threads; the restorer blob later only mremaps each one into place.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"
#include "restorer/restorer_args.h"

namespace cryo {

// VMAs the restorer recreates (not the vDSO family, not [vsyscall]).
bool IsPremapped(const image::Vma& v);
// Bytes of address space the premaps need (VMAs plus a guard page each).
uint64_t PremapSize(const image::Mm& mm);

// Finds a free range of `len` bytes that overlaps neither `a` nor `b`.
Result<uint64_t> FindGap(const std::vector<std::pair<uint64_t, uint64_t>>& used, uint64_t len);

// Maps every premapped VMA inside [base, base + PremapSize) (reserved PROT_NONE
// by the caller), fills it from `pages_fd` with `threads` threads, checks each
// page run's checksum, and applies the final protection and madvise flags.
// Appends one move per VMA to `moves`.
// `shmem_fd(id)` gives an fd on the shmem object of a shared anonymous VMA
// (already filled), or -1. `map_shm(vma, at, prot)` maps a VMA of a memfd,
// /dev/shm file or SysV segment (Vma.shm_object) at `at`.
using MapShmFn = std::function<Status(const image::Vma&, uint64_t, int)>;
Status PremapAndFill(const image::Mm& mm, int pages_fd, uint64_t base, int threads,
                     const std::function<int(uint64_t)>& shmem_fd, std::vector<restorer::Move>* moves,
                     const MapShmFn& map_shm = nullptr);

// The [vvar]/[vvar_vclock]/[vdso] moves from the helper's own mappings to the
// image's addresses; refuses a layout that differs from the image's.
Status PlanSpecialMoves(const image::Mm& mm, const std::vector<proc::Vma>& own, std::vector<restorer::Move>* moves);

}  // namespace cryo
