#include "mem/anon_shmem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "image/format.h"
#include "mem/hugetlb.h"
#include "mem/shm_object.h"

namespace cryo {

Result<int> CreateAnonShmem(const image::ShmObject& obj, bool noreserve) {
  const std::string what = "shared anonymous memory object " + std::to_string(obj.id());
  // hugetlb memory is made in whole huge pages.
  const uint64_t unit = obj.huge_page_size() ? obj.huge_page_size() : image::kPageSize;
  const uint64_t len = (std::max<uint64_t>(obj.size(), 1) + unit - 1) / unit * unit;
  // The object of a shared anonymous mapping (shmem_zero_setup; with
  // MAP_HUGETLB an unlinked hugetlbfs file, hugetlb_file_setup), kept through
  // an fd on it: /proc/self/map_files opens the mapped file itself.
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0) | HugetlbMapFlags(obj.huge_page_size()),
                   -1, 0);
  if (m == MAP_FAILED) return Status::FromErrno("mmap of " + what);
  char link[96];
  snprintf(link, sizeof(link), "/proc/self/map_files/%lx-%lx", reinterpret_cast<unsigned long>(m),
           reinterpret_cast<unsigned long>(m) + len);
  const int fd = ::open(link, O_RDWR | O_CLOEXEC);
  const int err = errno;
  ::munmap(m, len);
  if (fd < 0) return Status::Errno(err, "open " + std::string(link) + " for " + what);
  Status st = ShapeShmFile(fd, obj, what);
  if (!st.ok()) {
    ::close(fd);
    return st;
  }
  return fd;
}

bool AnonShmemNoreserve(const image::LoadedImage& img, uint64_t id) {
  for (const auto& [pid, p] : img.processes)
    for (const image::Vma& v : p.mm.vmas())
      if (v.shm_object() == id && std::find(v.vm_flags().begin(), v.vm_flags().end(), "nr") != v.vm_flags().end())
        return true;
  return false;
}

}  // namespace cryo
