#include "mem/existing_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "base/file_util.h"
#include "mem/lazy_plan.h"
#include "mem/pagemap_scan.h"

namespace cryo {

namespace {

constexpr int kMadvGuardInstall = 102;  // include/uapi/asm-generic/mman-common.h, Linux 6.13

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// Whether this kernel's smaps marks a VMA holding guard regions with VmFlags
// "gu" (added after guard regions themselves, 6.13): tried once on a page of
// cryo's own, a guard installed and smaps read.
bool SmapsShowsGuardFlag() {
  void* m = ::mmap(nullptr, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  bool shown = false;
  if (::madvise(m, 4096, kMadvGuardInstall) == 0) {
    char head[32];
    snprintf(head, sizeof(head), "%" PRIx64 "-", reinterpret_cast<uint64_t>(m));
    Result<std::string> smaps = ReadFileToString("/proc/self/smaps");
    if (smaps.ok()) {
      size_t at = 0;
      for (;;) {
        at = smaps->find(head, at);
        if (at == std::string::npos) break;
        if (at == 0 || (*smaps)[at - 1] == '\n') {
          const size_t flags = smaps->find("\nVmFlags:", at);
          const size_t eol = flags == std::string::npos ? flags : smaps->find('\n', flags + 1);
          if (flags != std::string::npos) {
            const std::string line = smaps->substr(flags, eol == std::string::npos ? std::string::npos : eol - flags);
            shown = (line + " ").find(" gu ") != std::string::npos;
          }
          break;
        }
        ++at;
      }
    }
  }
  ::munmap(m, 2 * 4096);
  return shown;
}

}  // namespace

Result<std::vector<std::pair<uint64_t, uint64_t>>> ExistingAnonPages(pid_t pid, uint64_t start, uint64_t end) {
  CRYO_ASSIGN_OR_RETURN(PagemapScanner scanner, PagemapScanner::Open(pid));
  CRYO_ASSIGN_OR_RETURN(std::vector<PageRegion> regions, scanner.ScanAnon(start, end));
  auto out = ExistingInRegions(regions, start, end);
  if (!out.ok()) return out.status().Prefixed("pid " + std::to_string(pid));
  return out;
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> ExistingInRegions(const std::vector<PageRegion>& regions,
                                                                     uint64_t start, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const PageRegion& r : regions) {
    if (r.categories & kPageGuard)
      return Status::Error("a guard region at " + Hex(r.start) + " in a VMA whose pages were not planned");
    // The zero page (a read fault) holds nothing: zero on the target too.
    if ((r.categories & kPagePfnZero) || !(r.categories & (kPagePresent | kPageSwapped))) continue;
    const uint64_t s = std::max(r.start, start), e = std::min(r.end, end);
    if (s >= e) continue;
    if (!out.empty() && out.back().first + out.back().second == s)
      out.back().second += e - s;
    else
      out.emplace_back(s, e - s);
  }
  return out;
}

bool MayLeaveUnplanned(const image::Vma& v) {
  if (!LazyEligibleVma(v) || std::find(v.vm_flags().begin(), v.vm_flags().end(), "gu") != v.vm_flags().end())
    return false;
  static std::once_flag once;
  static bool safe = false;
  std::call_once(once, [] { safe = !KernelHasGuardRegions() || SmapsShowsGuardFlag(); });
  return safe;
}

}  // namespace cryo
