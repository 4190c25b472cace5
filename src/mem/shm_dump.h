// The dump half of shared memory objects: memfds, POSIX shared memory (/dev/shm),
// SysV segments and shared anonymous memory, wherever the tree maps or holds
// them. Each object is recorded once (shm.img) with its content (shm-pages.img):
// every page the object holds, found on the object itself, so also the pages
// no process of the tree has in its page table (written by a process that has
// exited since, or only ever written with write(2)); every holder, a VMA or an
// fd, names it by id.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"
#include "proc/proc.h"

namespace cryo {

// What a VMA maps, if it is a shared memory object (SHM_UNKNOWN otherwise):
// "/memfd:NAME (deleted)", "/SYSV%08x (deleted)" (shared), a file of /dev/shm,
// or "/dev/zero (deleted)" (shared: MAP_SHARED|MAP_ANONYMOUS).
image::ShmKind ShmKindOfVma(const proc::Vma& v);

// Refuses, before anything is done to the process, a mapping whose object
// cannot be restored: part of a SysV attach (split by mprotect(2) or partly unmapped). `file` is its FileId.
Status CheckShmMapping(pid_t pid, const proc::Vma& v, image::ShmKind kind, const image::FileId& file,
                       const std::string& what);

// A VMA of the mm record (by index) that maps a shared memory object.
struct ShmMapping {
  int vma;
  image::ShmKind kind;
};

// One dumped process: its records (holders get their shm_object id here) and
// the mappings DescribeVmas found.
struct ShmHolders {
  pid_t pid;
  image::Mm* mm;
  image::FdTable* fds;
  const std::vector<ShmMapping>* maps;
};

// Before anything is written: refuses, naming the holder, every object of
// the tree that DumpShmObjects would refuse, and every object also held
// (an fd or a mapping) by a process outside `tree` (every pid of the tree).
// Reads metadata only, through cryo's own opens: nothing in the tree changes.
Status CheckShmObjects(const std::vector<ShmHolders>& procs, const std::set<pid_t>& tree);

// Finds every object the tree holds (FD_MEMFD and FD_POSIX_SHM fds, and the
// mappings), reads each one's metadata and content through one of its holders
// (/proc/PID/fd/N or /proc/PID/map_files/A-B, so nothing in the tree changes),
// writes the content to shm-pages.img and fills `table`. Refuses, naming the
// holder, what cannot be restored (a
// partial SysV attach, a hugetlb memfd). Adds "memfd", "posix-shm",
// "sysv-shm", "anon-shmem" to `features` as used. `tree`: every pid of the tree.
Status DumpShmObjects(const std::vector<ShmHolders>& procs, const std::set<pid_t>& tree, image::ImageWriter* writer,
                      image::ShmTable* table, std::set<std::string>* features);

}  // namespace cryo
