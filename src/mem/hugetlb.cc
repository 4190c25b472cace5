#include "mem/hugetlb.h"

#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>

#include "base/file_util.h"

namespace cryo {

namespace {

// MAP_HUGE_SHIFT (include/uapi/asm-generic/hugetlb_encode.h): the page size's
// log2 goes in bits 26-31 of mmap's flags.
constexpr int kMapHugeShift = 26;
// An anonymous hugetlb mapping is backed by an unlinked file of cryo's kernel's
// internal hugetlbfs mount named so (hugetlb_file_setup, fs/hugetlbfs/inode.c).
constexpr char kAnonHugepage[] = "/anon_hugepage";

std::string VmaName(const proc::Vma& v) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%" PRIx64 "-%" PRIx64, v.start, v.end);
  return std::string("VMA ") + buf + (v.name.empty() ? "" : " (" + v.name + ")");
}

std::string SizeName(uint64_t size) {
  return size >= (1ull << 30) ? std::to_string(size >> 30) + " GiB" : std::to_string(size >> 20) + " MiB";
}

// Where the pool of huge pages of `size` bytes is raised.
std::string PoolKnob(uint64_t size) {
  return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size >> 10) + "kB/nr_hugepages";
}

Result<uint64_t> ReadCount(const std::string& path) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  char* end = nullptr;
  const unsigned long long n = strtoull(text.c_str(), &end, 10);
  if (end == text.c_str()) return Status::Error(path + ": not a number: " + text);
  return static_cast<uint64_t>(n);
}

}  // namespace

Status DescribeHugetlbVma(pid_t pid, const proc::Vma& v, image::Vma* iv) {
  const std::string what = "pid " + std::to_string(pid) + ": " + VmaName(v);
  // The hugetlbfs files the kernel makes itself (hugetlb_file_setup) are
  // named "anon_hugepage" (mmap MAP_HUGETLB), "memfd:NAME" (memfd_create
  // MFD_HUGETLB) and "SYSV%08x" (shmget SHM_HUGETLB), all unlinked.
  const bool memfd = v.deleted && v.name.rfind("/memfd:", 0) == 0;
  const bool sysv = v.deleted && v.shared && v.name.rfind("/SYSV", 0) == 0;
  const bool anon = v.deleted && v.name == kAnonHugepage;
  // Anything else is a file of a hugetlbfs mount (IsHugetlbfsFileVma), kept
  // as a shared memory object like POSIX shared memory (shm_dump.h).
  if (!memfd && !sysv && !anon && !IsHugetlbfsFileVma(v))
    return Status::Error(what + " maps a hugetlbfs file cryo cannot name (" + v.name + ")");
  // A private mapping of a memfd or of a hugetlbfs file (feature
  // hugetlb-private-file) is made again from the restored object; the huge
  // pages it copied on write are private pages of its own (pagemap: not
  // PAGE_IS_FILE), dumped and written back like those of any private file
  // mapping.
  const uint64_t size = v.kernel_page_size;
  if (size < (2ull << 20) || (size & (size - 1)) || v.start % size || v.end % size)
    return Status::Error(what + " is hugetlb memory of pages of " + std::to_string(size >> 10) +
                         " KiB (smaps KernelPageSize), which cryo does not know");
  iv->set_huge_page_size(size);
  return Status::Ok();
}

bool IsHugetlbfsFileVma(const proc::Vma& v) {
  if (!v.HasFlag("ht") || v.inode == 0 || v.name.empty() || v.name[0] != '/') return false;
  // The kernel's own files (hugetlb_file_setup): see DescribeHugetlbVma.
  if (v.deleted && (v.name == kAnonHugepage || v.name.rfind("/memfd:", 0) == 0)) return false;
  if (v.deleted && v.shared && v.name.rfind("/SYSV", 0) == 0) return false;
  return true;
}

bool IsOnHugetlbfs(const std::string& path) {
  struct statfs sf;
  return ::statfs(path.c_str(), &sf) == 0 && static_cast<unsigned long>(sf.f_type) == HUGETLBFS_MAGIC;
}

int HugetlbSizeBits(uint64_t size) {
  if (size == 0) return 0;
  int log2 = 0;
  while ((1ull << log2) < size) ++log2;
  return log2 << kMapHugeShift;
}

int HugetlbMapFlags(uint64_t size) { return size == 0 ? 0 : MAP_HUGETLB | HugetlbSizeBits(size); }

Result<uint64_t> HugetlbPageSizeOfFd(int fd, const std::string& what) {
  struct statfs sf;
  if (::fstatfs(fd, &sf) != 0) return Status::FromErrno("statfs of " + what);
  // hugetlbfs reports its page size as the block size (hugetlbfs_statfs).
  if (static_cast<unsigned long>(sf.f_type) != HUGETLBFS_MAGIC) return uint64_t{0};
  const uint64_t size = static_cast<uint64_t>(sf.f_bsize);
  if (size != (2ull << 20) && size != (1ull << 30))
    return Status::Error(what + " is hugetlb memory of pages of " + std::to_string(size >> 10) +
                         " KiB, which cryo does not know");
  return size;
}

Status CheckFreeHugePages(const image::LoadedImage& img) {
  std::map<uint64_t, uint64_t> needed;  // page size -> pages
  std::map<uint64_t, std::string> example;
  for (const auto& [pid, p] : img.processes) {
    for (const image::Vma& v : p.mm.vmas()) {
      const uint64_t size = v.huge_page_size();
      // Shared hugetlb memory: counted once, by its object, below. A private
      // mapping of an object (a memfd, a hugetlbfs file) reserves its own
      // pages for its copies on write, all at mmap, like private anonymous
      // memory (hugetlb_reserve_pages).
      if (size == 0 || (v.shm_object() && v.kind() != image::VMA_FILE_PRIVATE) ||
          std::find(v.vm_flags().begin(), v.vm_flags().end(), "nr") != v.vm_flags().end())
        continue;
      needed[size] += (v.end() - v.start()) / size;
      if (!example.count(size)) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%" PRIx64 "-%" PRIx64, v.start(), v.end());
        example[size] = "pid " + std::to_string(pid) + " VMA " + buf;
      }
    }
  }
  // A shared object reserves all its pages when it is made (shmget,
  // memfd's ftruncate and fill, mmap of shared anonymous memory). A SysV
  // segment the restore reuses (left by a killed original) already holds its
  // pages but is counted too: the check errs on the side of refusing.
  for (const image::ShmObject& o : img.shm.objects()) {
    const uint64_t size = o.huge_page_size();
    if (size == 0) continue;
    needed[size] += (o.size() + size - 1) / size;
    if (!example.count(size)) example[size] = "shared memory object " + std::to_string(o.id()) +
                                              (o.name().empty() ? "" : " \"" + o.name() + "\"");
  }
  for (const auto& [size, pages] : needed) {
    const std::string dir = "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size >> 10) + "kB/";
    auto free_pages = ReadCount(dir + "free_hugepages");
    if (!free_pages.ok())
      return Status::Error("the image holds hugetlb memory of " + SizeName(size) + " pages (" + example[size] +
                           "), which this system does not have (" + free_pages.status().message() + ")");
    CRYO_ASSIGN_OR_RETURN(uint64_t reserved, ReadCount(dir + "resv_hugepages"));
    const uint64_t available = *free_pages > reserved ? *free_pages - reserved : 0;
    if (available < pages)
      return Status::Error("the image needs " + std::to_string(pages) + " free huge pages of " + SizeName(size) +
                           " (hugetlb memory, e.g. " + example[size] + "), the system has " + std::to_string(available) +
                           ": raise " + (size == (2ull << 20) ? "/proc/sys/vm/nr_hugepages (or " + PoolKnob(size) + ")"
                                                               : PoolKnob(size)) +
                           " by " + std::to_string(pages - available));
  }
  return Status::Ok();
}

}  // namespace cryo
