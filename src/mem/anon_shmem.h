// Shared anonymous memory (mmap(2) MAP_SHARED|MAP_ANONYMOUS, or a shared
// mapping of /dev/zero): an unlinked shmem file the kernel names "dev/zero"
// (maps: "/dev/zero (deleted)"), shared by every process that inherited the
// mapping. It is a shared memory object like a memfd (shm_dump.h,
// shm_restore.h): its pages are read from the object, so pages written by a
// process that has exited since are kept too.
#pragma once

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

// Restore: a new object of `obj`'s size, made the way the kernel makes one
// (so it shows "/dev/zero (deleted)" where it is mapped, or "/anon_hugepage
// (deleted)" for hugetlb memory, with its huge page size), with its owner and
// mode, as an fd. `noreserve`: created by a MAP_NORESERVE mapping, so that its
// pages are charged to the commit limit as they are allocated, not up front
// (shmem_acct_size in mm/shmem.c).
Result<int> CreateAnonShmem(const image::ShmObject& obj, bool noreserve);

// Whether the image's mappings of object `id` were created with
// MAP_NORESERVE (smaps VmFlags "nr").
bool AnonShmemNoreserve(const image::LoadedImage& img, uint64_t id);

}  // namespace cryo
