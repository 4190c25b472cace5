// The dump half of memory: describing every VMA of a process (its pages are
// stored by mem/page_dump.h).
#pragma once

#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

struct ShmMapping;

// mmap(2) MAP_DROPPABLE (Linux 6.11, not in every libc's headers yet): a
// mapping type like MAP_PRIVATE, for anonymous memory the kernel may free
// under memory pressure (VmFlags "dp").
inline constexpr uint32_t kMapDroppable = 0x08;

// Builds the image VMAs of a process from /proc. Fails, naming the VMA, on a
// mapping cryo cannot restore yet (device memory, hugetlbfs, deleted files, ...).
// (Every VmFlags mnemonic is classified by the audit, audit/vma_rules.cc.)
// Mappings of memfds, /dev/shm files and SysV segments are listed in `shm`
// (DumpShmObjects records the objects); without `shm` they are refused.
// Mappings of deleted files with no name left are listed in `unlinked` (VMA
// indices; DumpUnlinkedFiles records the files); without it they are refused.
// A deleted file that still has another name is mapped again through it.
Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm,
                    std::vector<ShmMapping>* shm = nullptr, std::vector<int>* unlinked = nullptr);

// Whether a VMA of `mm` has an attribute older cryo did not restore (mlock,
// MADV_SEQUENTIAL/RANDOM, MAP_DROPPABLE, mseal): feature "vma-attributes"
// (MAP_NORESERVE has its own, "map-noreserve").
bool HasVmaAttributes(const image::Mm& mm);

}  // namespace cryo
