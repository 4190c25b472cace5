// The dump half of memory: describing every VMA of a process and storing the
// pages that cannot be found again elsewhere (anonymous and dirty private pages).
#pragma once

#include <functional>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "proc/proc.h"

namespace cryo {

struct ShmMapping;

// Builds the image VMAs of a process from /proc. Fails, naming the VMA, on a
// mapping cryo cannot restore yet (device memory, hugetlbfs, deleted files, ...).
// Mappings of memfds, /dev/shm files and SysV segments are listed in `shm`
// (DumpShmObjects records the objects); without `shm` they are refused.
Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm,
                    std::vector<ShmMapping>* shm = nullptr);

// Called with (bytes written so far, total bytes) as pages are written.
using ProgressFn = std::function<void(uint64_t, uint64_t)>;

// Finds the pages to store (PAGEMAP_SCAN), then has the target vmsplice its own
// pages into a pipe that cryo splices into `file` (no copy through cryo).
// Records the page runs and their checksums in `mm`. Pages in mm->inherited()
// (shared with the parent, cow_share.h) are not stored.
Status DumpPages(pid_t pid, RemoteSyscaller& rs, image::Mm* mm, WritableFile* file, const ProgressFn& progress);

}  // namespace cryo
