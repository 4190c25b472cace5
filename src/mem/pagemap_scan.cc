#include "mem/pagemap_scan.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <string>

namespace cryo {

namespace {
// From include/uapi/linux/fs.h (Linux 6.7); Debian 12's headers predate it.
struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
}  // namespace

Result<PagemapScanner> PagemapScanner::Open(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  return PagemapScanner(pid, std::move(fd));
}

Result<std::vector<PageRegion>> PagemapScanner::Scan(uint64_t start, uint64_t end) {
  std::vector<PageRegion> out;
  PageRegion vec[512];
  while (start < end) {
    PmScanArg arg{};
    arg.size = sizeof(arg);
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = sizeof(vec) / sizeof(vec[0]);
    arg.category_anyof_mask = kPagePresent | kPageSwapped;
    arg.return_mask = kPagePresent | kPageSwapped | kPageFile | kPagePfnZero;
    long n = ::ioctl(fd_.get(), kPagemapScan, &arg);
    if (n < 0)
      return Status::FromErrno("PAGEMAP_SCAN of pid " + std::to_string(pid_) + " range " + std::to_string(start));
    for (long i = 0; i < n; ++i) out.push_back(vec[i]);
    if (arg.walk_end <= start) break;
    start = arg.walk_end;
  }
  return out;
}

}  // namespace cryo
