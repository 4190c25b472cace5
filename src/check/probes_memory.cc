// Probes of memory interfaces: userfaultfd write-protect, PAGEMAP_SCAN,
// MADV_COLLAPSE and soft-dirty bits.
#include <linux/userfaultfd.h>
#include <sys/mman.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "base/pagemap_scan_abi.h"
#include "check/probe_child.h"

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ULL << 15)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace cryo::check::probe {

Result<UniqueFd> OpenUserfaultfd() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (fd.valid()) return fd;
  const int err = errno;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));  // used when vm.unprivileged_userfaultfd forbids the syscall
  if (dev.valid()) {
    fd.reset(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
    if (fd.valid()) return fd;
  }
  return Status::Errno(err, "userfaultfd");
}

Probe ProbeUserfaultfdWpAsync() {
  Probe p{"userfaultfd-wp-async", false, false, ""};
  // UFFDIO_API can be done once per fd: the first fd asks what exists, the second enables WP_ASYNC.
  auto query = OpenUserfaultfd();
  if (!query.ok()) return Fail(p, query.status());
  struct uffdio_api api;
  std::memset(&api, 0, sizeof(api));
  api.api = UFFD_API;
  if (::ioctl(query->get(), UFFDIO_API, &api) != 0) return Fail(p, Status::FromErrno("UFFDIO_API"));
  const uint64_t available = api.features;
  auto fd = OpenUserfaultfd();
  if (!fd.ok()) return Fail(p, fd.status());
  std::memset(&api, 0, sizeof(api));
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC;
  if (::ioctl(fd->get(), UFFDIO_API, &api) != 0) return Fail(p, Status::FromErrno("UFFDIO_API with UFFD_FEATURE_WP_ASYNC (features " + Hex(available) + ")"));
  p.ok = true;
  p.detail = "UFFDIO_API accepted UFFD_FEATURE_WP_ASYNC (features " + Hex(available) + ")";
  return p;
}

constexpr uint64_t kPageIsPresent = 1 << 3;  // PAGE_IS_PRESENT

Probe ProbePagemapScan() {
  Probe p{"pagemap-scan", false, false, ""};  // how the dump finds present pages (else: reading pagemap)
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(4 * page);
  if (m.addr() == nullptr) return Fail(p, Status::FromErrno("mmap"));
  m.addr()[0] = 1;  // pages 0 and 2 present, 1 and 3 not
  m.addr()[2 * page] = 1;
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(p, Status::FromErrno("open /proc/self/pagemap"));
  PmPageRegion vec[8];
  std::memset(vec, 0, sizeof(vec));
  PmScanArg arg;
  std::memset(&arg, 0, sizeof(arg));
  arg.size = sizeof(arg);
  arg.start = reinterpret_cast<uint64_t>(m.addr());
  arg.end = arg.start + 4 * page;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vec_len = 8;
  arg.category_mask = kPageIsPresent;
  arg.return_mask = kPageIsPresent;
  int n = ::ioctl(fd.get(), kPagemapScanIoctl, &arg);
  if (n < 0) return Fail(p, Status::FromErrno("ioctl PAGEMAP_SCAN"));
  const uint64_t base = arg.start;
  if (n != 2 || vec[0].start != base || vec[0].end != base + page || vec[1].start != base + 2 * page || vec[1].end != base + 3 * page)
    return Fail(p, Status::Error("PAGEMAP_SCAN reported " + std::to_string(n) + " regions, expected pages 0 and 2"));
  p.ok = true;
  p.detail = "PAGEMAP_SCAN found the 2 touched pages of a 4-page mapping";
  return p;
}

Probe ProbeMadvCollapse() {
  Probe p{"madv-collapse", false, false, ""};  // how a restore makes huge pages again (else: small pages)
  constexpr size_t kHuge = 2 << 20;
  Mapping m(2 * kHuge);
  if (m.addr() == nullptr) return Fail(p, Status::FromErrno("mmap"));
  char* huge = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(m.addr()) + kHuge - 1) & ~(kHuge - 1));
  huge[0] = 1;
  auto enabled = ReadFileToString("/sys/kernel/mm/transparent_hugepage/enabled");
  const std::string thp = "transparent_hugepage/enabled: " + (enabled.ok() ? std::string(Trim(*enabled)) : "absent");
  if (::madvise(huge, kHuge, 25 /*MADV_COLLAPSE*/) != 0 && errno == EINVAL)
    return Fail(p, Status::FromErrno("madvise MADV_COLLAPSE (" + thp + ")"));
  p.ok = true;
  p.detail = "MADV_COLLAPSE accepted (" + thp + ")";
  return p;
}

Probe ProbeSoftDirty() {
  Probe p{"soft-dirty", true, false, ""};
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(page);
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  uint64_t entry = 0;
  if (m.addr() != nullptr) m.addr()[0] = 1;  // a freshly written page is soft-dirty when the kernel tracks it
  if (m.addr() == nullptr || !fd.valid() ||
      ::pread(fd.get(), &entry, sizeof(entry), static_cast<off_t>(reinterpret_cast<uintptr_t>(m.addr()) / page * sizeof(entry))) != sizeof(entry)) {
    p.detail = "could not read /proc/self/pagemap (" + std::string(strerror(errno)) + "); cryo does not use them";
    return p;
  }
  const bool reported = (entry >> 55) & 1;
  p.detail = reported ? "soft-dirty bits reported (CONFIG_MEM_SOFT_DIRTY on); cryo does not use them"
                      : "soft-dirty bits not reported (CONFIG_MEM_SOFT_DIRTY off); cryo does not use them";
  return p;
}

}  // namespace cryo::check::probe
