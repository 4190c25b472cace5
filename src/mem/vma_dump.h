// The dump half of memory: describing every VMA of a process (its pages are
// stored by mem/page_dump.h).
#pragma once

#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

struct ShmMapping;

// Builds the image VMAs of a process from /proc. Fails, naming the VMA, on a
// mapping cryo cannot restore yet (device memory, hugetlbfs, deleted files, ...).
// Mappings of memfds, /dev/shm files and SysV segments are listed in `shm`
// (DumpShmObjects records the objects); without `shm` they are refused.
// Mappings of deleted files with no name left are listed in `unlinked` (VMA
// indices; DumpUnlinkedFiles records the files); without it they are refused.
// A deleted file that still has another name is mapped again through it.
Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm,
                    std::vector<ShmMapping>* shm = nullptr, std::vector<int>* unlinked = nullptr);

}  // namespace cryo
