// hugetlb memory (MAP_HUGETLB, VmFlags "ht"): private anonymous mappings are
// restored with their content and their page size (smaps KernelPageSize: 2
// MiB, 1 GiB); the other kinds (shared anonymous hugetlb memory, hugetlb
// memfds, files on a hugetlbfs mount, SysV SHM_HUGETLB segments) are refused
// by name. Huge pages come from the pool the administrator reserved
// (/proc/sys/vm/nr_hugepages and /sys/kernel/mm/hugepages/): a restore checks
// there are enough free ones before it creates anything. Feature "hugetlb".
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"
#include "proc/proc.h"

namespace cryo {

// A VMA with VmFlags "ht": records its page size in iv->huge_page_size, or
// refuses, naming the pid, the VMA and what it is.
Status DescribeHugetlbVma(pid_t pid, const proc::Vma& v, image::Vma* iv);

// The mmap(2) flags that ask for huge pages of `size` bytes (MAP_HUGETLB and
// the size's log2 in MAP_HUGE_SHIFT); 0 for 0.
int HugetlbMapFlags(uint64_t size);

// Before anything is created: the pool of each huge page size has as many
// free (and not reserved) pages as the image's hugetlb VMAs take (each VMA
// reserves all its pages at mmap, but with MAP_NORESERVE); else an error
// naming how many are needed and where to raise the pool.
Status CheckFreeHugePages(const image::LoadedImage& img);

}  // namespace cryo
