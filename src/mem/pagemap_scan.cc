#include "mem/pagemap_scan.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "base/kernel_features.h"
#include "base/pagemap_scan_abi.h"
#include "base/log.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kEntryPresent = 1ull << 63, kEntrySwapped = 1ull << 62, kEntryFile = 1ull << 61;
constexpr uint64_t kEntryPfnMask = (1ull << 55) - 1;
constexpr uint64_t kEntryGuard = 1ull << 58;  // PM_GUARD_REGION, Linux 6.15
constexpr uint64_t kEntryExclusive = 1ull << 56;  // PM_MMAP_EXCLUSIVE
constexpr int kMadvGuardInstall = 102;        // include/uapi/asm-generic/mman-common.h, Linux 6.13
constexpr size_t kReadBatch = 32768;  // entries per read: 256 KiB of pagemap for 128 MiB of address space

// Set once a PAGEMAP_SCAN failed with ENOTTY: /proc/PID/pagemap has no ioctl
// before Linux 6.7 (vfs_ioctl() returns -ENOTTY without unlocked_ioctl).
std::atomic<bool> g_ioctl_missing{false};

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

}  // namespace

// The frame of the shared zero page: a read fault on untouched private
// anonymous memory maps it (do_anonymous_page()); pagemap shows its frame to
// CAP_SYS_ADMIN. 0 when not visible: zero pages are then stored as data.
// Some kernels give a read fault a fresh page of its own instead (seen on a
// 6.18 build): the probe's frame is then freed with it and may later hold a
// target's data, which must never be taken for the zero page. So two pages
// of two mappings are read, both kept mapped, and the frame counts only when
// both show the same one, not exclusively mapped (PM_MMAP_EXCLUSIVE, bit 56).
uint64_t ZeroPfn() {
  static const uint64_t kPfn = [] {
    void* m[2];
    uint64_t entry[2] = {0, 0};
    for (void*& p : m) {
      p = ::mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) (void)*static_cast<volatile const char*>(p);
    }
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < 2; ++i)
      if (fd < 0 || m[i] == MAP_FAILED ||
          ::pread(fd, &entry[i], sizeof(uint64_t), static_cast<off_t>(reinterpret_cast<uintptr_t>(m[i]) / kPage * 8)) != 8)
        entry[i] = 0;
    if (fd >= 0) ::close(fd);
    for (void* p : m)
      if (p != MAP_FAILED) ::munmap(p, kPage);
    const uint64_t pfn = entry[0] & kEntryPfnMask;
    const bool shared = (entry[0] & kEntryPresent) && (entry[1] & kEntryPresent) && !(entry[0] & kEntryExclusive) &&
                        pfn != 0 && pfn == (entry[1] & kEntryPfnMask);
    return shared ? pfn : uint64_t{0};
  }();
  return kPfn;
}

namespace {

// What this kernel tells of a guard page (probed on a page of cryo's own).
struct GuardProbe {
  bool kernel_has_guards = false;  // MADV_GUARD_INSTALL accepted
  bool ioctl_reports = false;      // PAGEMAP_SCAN accepts and returns PAGE_IS_GUARD
  bool pagemap_reports = false;    // the pagemap entry has bit 58
};

const GuardProbe& ProbeGuards() {
  static const GuardProbe kProbe = [] {
    GuardProbe p;
    void* m = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return p;
    // EINVAL before Linux 6.13: no guard regions at all.
    p.kernel_has_guards = ::madvise(m, kPage, kMadvGuardInstall) == 0;
    const int fd = p.kernel_has_guards ? ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
      const uint64_t at = reinterpret_cast<uintptr_t>(m);
      uint64_t entry = 0;
      p.pagemap_reports = ::pread(fd, &entry, sizeof(entry), static_cast<off_t>(at / kPage * 8)) == 8 && (entry & kEntryGuard);
      // An unknown category bit makes PAGEMAP_SCAN fail with EINVAL
      // (pagemap_scan_get_args): so before 6.15.
      PmPageRegion region{};
      PmScanArg arg{};
      arg.size = sizeof(arg);
      arg.start = at;
      arg.end = at + kPage;
      arg.vec = reinterpret_cast<uint64_t>(&region);
      arg.vec_len = 1;
      arg.category_anyof_mask = kPageGuard;
      arg.return_mask = kPageGuard;
      p.ioctl_reports = ::ioctl(fd, kPagemapScanIoctl, &arg) == 1 && (region.categories & kPageGuard);
      ::close(fd);
    }
    ::munmap(m, kPage);
    return p;
  }();
  return kProbe;
}

}  // namespace

bool GuardRegionsVisible() {
  const GuardProbe& p = ProbeGuards();
  if (!p.kernel_has_guards) return true;
  const bool read = g_ioctl_missing.load(std::memory_order_relaxed) || PretendMissing("pagemap-scan");
  return read ? p.pagemap_reports : p.ioctl_reports;
}

bool KernelHasGuardRegions() { return ProbeGuards().kernel_has_guards; }

bool PagemapScanner::reports_guards() const {
  const GuardProbe& p = ProbeGuards();
  return !p.kernel_has_guards || (method_ == Method::kIoctl ? p.ioctl_reports : p.pagemap_reports);
}

uint64_t PagemapEntryCategories(uint64_t entry, uint64_t zero_pfn) {
  uint64_t cat = 0;
  if (entry & kEntryPresent) {
    cat |= kPagePresent;
    if (zero_pfn != 0 && (entry & kEntryPfnMask) == zero_pfn) cat |= kPagePfnZero;
  }
  if (entry & kEntrySwapped) cat |= kPageSwapped;
  if (entry & kEntryFile) cat |= kPageFile;
  if (entry & kEntryGuard) cat |= kPageGuard;
  return cat;
}

Result<PagemapScanner> PagemapScanner::Open(pid_t pid) {
  if (!g_ioctl_missing.load(std::memory_order_relaxed) && PretendMissing("pagemap-scan") && !g_ioctl_missing.exchange(true))
    LOG_INFO("PAGEMAP_SCAN taken as missing (CRYO_PRETEND_MISSING): reading /proc/PID/pagemap instead");
  CRYO_ASSIGN_OR_RETURN(PagemapScanner s, Open(pid, g_ioctl_missing.load(std::memory_order_relaxed) ? Method::kRead : Method::kIoctl));
  // Known before the first real scan, so that callers never hand a range
  // with holes to kRead (an empty range costs nothing to the ioctl).
  if (s.method_ == Method::kIoctl) {
    auto r = s.Scan(0, 0);
    if (!r.ok()) return r.status();
  }
  return s;
}

Result<PagemapScanner> PagemapScanner::Open(pid_t pid, Method method) {
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  return PagemapScanner(pid, std::move(fd), method);
}

Result<std::vector<PageRegion>> PagemapScanner::Scan(uint64_t start, uint64_t end) {
  if (method_ == Method::kRead) return ScanRead(start, end);
  auto r = ScanIoctl(start, end);
  if (r.ok() || r.status().err() != ENOTTY || start != end) return r;
  // The empty scan Open() tries: the ioctl does not exist.
  if (!g_ioctl_missing.exchange(true))
    LOG_INFO("this kernel has no PAGEMAP_SCAN (Linux 6.7+): reading /proc/PID/pagemap instead");
  method_ = Method::kRead;
  return std::vector<PageRegion>{};
}

Result<std::vector<PageRegion>> PagemapScanner::ScanAnon(uint64_t start, uint64_t end) {
  if (method_ == Method::kIoctl && start < end) return ScanIoctl(start, end, false);
  return Scan(start, end);
}

Result<std::vector<PageRegion>> PagemapScanner::ScanIoctl(uint64_t start, uint64_t end, bool with_file) {
  std::vector<PageRegion> out;
  PageRegion vec[512];
  for (bool first = true; first || start < end; first = false) {
    PmScanArg arg{};
    arg.size = sizeof(arg);
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = sizeof(vec) / sizeof(vec[0]);
    arg.category_anyof_mask = kPagePresent | kPageSwapped;
    arg.return_mask = kPagePresent | kPageSwapped | (with_file ? uint64_t{kPageFile} : uint64_t{0}) | kPagePfnZero | kPageHuge;
    if (ProbeGuards().ioctl_reports) arg.return_mask |= kPageGuard;  // a guard page is swapped too
    long n = ::ioctl(fd_.get(), kPagemapScanIoctl, &arg);
    if (n < 0) return Status::FromErrno("PAGEMAP_SCAN of pid " + std::to_string(pid_) + " range " + Hex(start));
    for (long i = 0; i < n; ++i) out.push_back(vec[i]);
    if (arg.walk_end <= start) break;
    start = arg.walk_end;
  }
  return out;
}

Result<std::vector<PageRegion>> PagemapScanner::ScanRead(uint64_t start, uint64_t end) {
  std::vector<PageRegion> out;
  std::vector<uint64_t> entries;
  const uint64_t zero_pfn = ZeroPfn();
  for (uint64_t a = start; a < end;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>((end - a) / kPage, kReadBatch));
    if (n == 0) break;  // less than a page left: ranges are page-aligned
    entries.resize(n);
    char* dst = reinterpret_cast<char*>(entries.data());
    const size_t want = n * 8;
    for (size_t got = 0; got < want;) {
      const ssize_t r = ::pread(fd_.get(), dst + got, want - got, static_cast<off_t>(a / kPage * 8 + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        return Status::Errno(r < 0 ? errno : EIO, "reading /proc/" + std::to_string(pid_) + "/pagemap at " + Hex(a));
      got += static_cast<size_t>(r);
    }
    for (size_t i = 0; i < n; ++i) {
      const uint64_t cat = PagemapEntryCategories(entries[i], zero_pfn);
      if (!(cat & (kPagePresent | kPageSwapped))) continue;
      const uint64_t page = a + i * kPage;
      if (!out.empty() && out.back().end == page && out.back().categories == cat)
        out.back().end += kPage;
      else
        out.push_back({page, page + kPage, cat});
    }
    a += n * kPage;
  }
  return out;
}

}  // namespace cryo
