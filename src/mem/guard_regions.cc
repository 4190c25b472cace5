#include "mem/guard_regions.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "image/format.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
// include/uapi/asm-generic/mman-common.h (Linux 6.13); Debian 12's headers
// predate them.
constexpr int kMadvGuardInstall = 102;
constexpr int kMadvGuardRemove = 103;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

std::string VmaName(const image::Vma& v) {
  return "VMA " + Hex(v.start()) + "-" + Hex(v.end()) + (v.name().empty() ? "" : " (" + v.name() + ")");
}

bool MayHoldGuards(const image::Vma& v) {
  return std::find(v.vm_flags().begin(), v.vm_flags().end(), "gu") != v.vm_flags().end();
}

void AddRange(std::vector<std::pair<uint64_t, uint64_t>>* out, uint64_t start, uint64_t end) {
  if (!out->empty() && out->back().second == start)
    out->back().second = end;
  else
    out->emplace_back(start, end);
}

}  // namespace

Status TakeGuardRegions(pid_t pid, PagemapScanner& scanner, const std::function<bool(const image::Vma&)>& scanned,
                        std::vector<PageRegion>* regions, image::Mm* mm) {
  for (const image::Vma& v : mm->vmas())
    if (MayHoldGuards(v) && !scanner.reports_guards())
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) +
                           " may hold guard regions (VmFlags gu, MADV_GUARD_INSTALL), which this kernel's pagemap "
                           "does not tell apart (PAGE_IS_GUARD and pagemap bit 58: Linux 6.15)");
  std::vector<std::pair<uint64_t, uint64_t>> guards;
  std::vector<PageRegion> kept;
  kept.reserve(regions->size());
  for (const PageRegion& r : *regions) {
    if (r.categories & kPageGuard)
      AddRange(&guards, r.start, r.end);
    else
      kept.push_back(r);
  }
  regions->swap(kept);
  // VMAs whose pages are not read (shared memory, shared file mappings) may
  // hold guards too (Linux 6.15 allows them on file mappings): asked for
  // theirs alone. Every one of them: kernels before VmFlags "gu" (6.18.y,
  // 6.19) show guards in pagemap but not which VMAs may hold some.
  for (const image::Vma& v : mm->vmas()) {
    const bool special = v.kind() == image::VMA_VDSO || v.kind() == image::VMA_VVAR ||
                         v.kind() == image::VMA_VVAR_VCLOCK || v.kind() == image::VMA_VSYSCALL;
    if (scanned(v) || special || !KernelHasGuardRegions()) continue;
    CRYO_ASSIGN_OR_RETURN(auto found, scanner.Scan(v.start(), v.end()));
    for (const PageRegion& r : found)
      if (r.categories & kPageGuard) AddRange(&guards, r.start, r.end);
  }
  std::sort(guards.begin(), guards.end());
  for (const auto& [s, e] : guards) {
    if (mm->guard_regions_size() && mm->guard_regions().rbegin()->vaddr() +
                                            mm->guard_regions().rbegin()->npages() * kPage == s) {
      auto* last = mm->mutable_guard_regions(mm->guard_regions_size() - 1);
      last->set_npages(last->npages() + (e - s) / kPage);
      continue;
    }
    image::PageRange* g = mm->add_guard_regions();
    g->set_vaddr(s);
    g->set_npages((e - s) / kPage);
  }
  return Status::Ok();
}

Status InstallGuardRegions(const image::Mm& mm, const image::Vma& v, uint64_t at) {
  for (const image::PageRange& g : mm.guard_regions()) {
    const uint64_t s = std::max(g.vaddr(), v.start()), e = std::min(g.vaddr() + g.npages() * kPage, v.end());
    if (s >= e) continue;
    if (::madvise(reinterpret_cast<void*>(at + (s - v.start())), e - s, kMadvGuardInstall) != 0)
      return Status::FromErrno("MADV_GUARD_INSTALL of " + Hex(s) + "-" + Hex(e) + " in " + VmaName(v) +
                               " (guard regions: Linux 6.13+; on file mappings 6.15+)");
  }
  return Status::Ok();
}

Status ClearGuardRegions(const image::Vma& v, uint64_t at, uint64_t len) {
  if (::madvise(reinterpret_cast<void*>(at), len, kMadvGuardRemove) == 0 || errno == EINVAL) return Status::Ok();
  return Status::FromErrno("MADV_GUARD_REMOVE of the inherited " + VmaName(v));
}

}  // namespace cryo
