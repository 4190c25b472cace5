// The dump half of memory: describing every VMA of a process (its pages are
// stored by mem/page_dump.h).
#pragma once

#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

// Builds the image VMAs of a process from /proc. Fails, naming the VMA, on a
// mapping cryo cannot restore yet (device memory, hugetlbfs, deleted files, ...).
Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm);

}  // namespace cryo
