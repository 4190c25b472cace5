// hugetlb memory (MAP_HUGETLB, VmFlags "ht"): private anonymous mappings are
// restored with their content and their page size (smaps KernelPageSize: 2
// MiB, 1 GiB), feature "hugetlb". Shared hugetlb memory (MAP_SHARED |
// MAP_HUGETLB, memfds made with MFD_HUGETLB, SysV SHM_HUGETLB segments) is a
// shared memory object (shm_dump.h, shm_restore.h) whose ShmObject has a
// huge_page_size, feature "hugetlb-shared"; its VMAs carry the page size too.
// A file on a hugetlbfs mount (open, mapped shared or private, also
// unlinked) is kept like POSIX shared memory: an SHM_POSIX object with a
// huge_page_size, any path on a hugetlbfs mount, feature "hugetlbfs-file".
// A private mapping of a hugetlb memfd or hugetlbfs file keeps the huge pages
// it copied on write, feature "hugetlb-private-file". Huge pages come from the pool the administrator reserved
// (/proc/sys/vm/nr_hugepages and /sys/kernel/mm/hugepages/): a restore checks
// there are enough free ones before it creates anything.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"
#include "proc/proc.h"

namespace cryo {

// A VMA with VmFlags "ht": records its page size in iv->huge_page_size, or
// refuses, naming the pid, the VMA and what it is.
Status DescribeHugetlbVma(pid_t pid, const proc::Vma& v, image::Vma* iv);

// Whether a hugetlb VMA maps a file of a hugetlbfs mount (one a program
// created by path), not one of the kernel's own (anonymous, memfd, SysV).
bool IsHugetlbfsFileVma(const proc::Vma& v);

// Whether `path` (a file, or /proc/PID/fd/N) is on a hugetlbfs mount.
bool IsOnHugetlbfs(const std::string& path);

// The mmap(2) flags that ask for huge pages of `size` bytes (MAP_HUGETLB and
// the size's log2 in MAP_HUGE_SHIFT); 0 for 0.
int HugetlbMapFlags(uint64_t size);

// The page size bits alone (log2 of `size` << 26), which mmap (MAP_HUGE_*),
// memfd_create (MFD_HUGE_*) and shmget (SHM_HUGE_*) share; 0 for 0.
int HugetlbSizeBits(uint64_t size);

// The huge page size of the hugetlbfs file `fd` (statfs f_bsize), 0 if it is
// on another file system.
Result<uint64_t> HugetlbPageSizeOfFd(int fd, const std::string& what);

// Before anything is created: the pool of each huge page size has as many
// free (and not reserved) pages as the image's hugetlb VMAs take (each VMA
// reserves all its pages at mmap, but with MAP_NORESERVE); else an error
// naming how many are needed and where to raise the pool.
Status CheckFreeHugePages(const image::LoadedImage& img);

}  // namespace cryo
