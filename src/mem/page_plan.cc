// Which pages of a process a dump stores (page_dump.h): PlanPages and its
// PAGEMAP_SCAN front end, and the pages shared copy-on-write with another
// process, read through /proc/PID/mem (SplitShared).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "base/log.h"
#include "base/size_format.h"
#include "image/format.h"
#include "mem/cow_share.h"
#include "mem/guard_regions.h"
#include "mem/page_dump.h"
#include "mem/thp.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// Which page categories are worth storing for a VMA kind (none: nothing stored).
bool WantPage(image::VmaKind kind, uint64_t cat) {
  if (cat & kPagePfnZero) return false;
  switch (kind) {
    case image::VMA_ANON_PRIVATE:
      return true;  // shared anonymous memory is stored from its object (shm_dump.h)
    case image::VMA_FILE_PRIVATE:
      return (cat & kPageSwapped) || !(cat & kPageFile);  // only pages copied on write
    default:
      return false;
  }
}

// Whether the pages of `v` are looked for (PlanPages): not those of a VMA a
// post-copy dump leaves unplanned (mem/existing_pages.h); guard regions are
// not looked for there either (it has none: MayLeaveUnplanned).
bool Planned(const image::Vma& v) { return WantPage(v.kind(), kPagePresent) && !v.remote_unplanned(); }

}  // namespace

Result<std::vector<PagePiece>> PlanPages(image::Mm* mm, const PageScanFn& scan, uint64_t block) {
  std::vector<PagePiece> pieces;
  uint64_t off = image::kPageDataOffset;
  for (image::Vma& v : *mm->mutable_vmas()) {
    if (!Planned(v)) continue;
    CRYO_ASSIGN_OR_RETURN(auto regions, scan(v.start(), v.end()));
    const bool readable = v.prot() & PROT_READ;
    uint64_t stored = 0;
    for (const PageRegion& r : regions) {
      if (!WantPage(v.kind(), r.categories)) continue;
      for (uint64_t a = r.start; a < r.end;) {
        // Extend the previous run when contiguous (and in this VMA), else start a new one.
        image::PageRun* run = mm->runs_size() ? mm->mutable_runs(mm->runs_size() - 1) : nullptr;
        const uint64_t to_block = block ? block - a % block : kMaxRunBytes;  // never across a block boundary
        uint64_t take;
        if (run && run->vaddr() + run->npages() * kPage == a && run->npages() * kPage < kMaxRunBytes &&
            a != v.start() && (!block || a % block != 0)) {
          take = std::min({r.end - a, kMaxRunBytes - run->npages() * kPage, to_block});
          run->set_npages(run->npages() + take / kPage);
        } else {
          take = std::min({r.end - a, kMaxRunBytes, to_block});
          run = mm->add_runs();
          run->set_vaddr(a);
          run->set_npages(take / kPage);
          run->set_offset(off);
        }
        if (!pieces.empty() && pieces.back().vaddr + pieces.back().len == a && pieces.back().readable == readable)
          pieces.back().len += take;  // one piece may span runs: fewer iovecs
        else
          pieces.push_back({a, take, off, readable});
        a += take;
        off += take;
        stored += take / kPage;
      }
    }
    v.set_stored_pages(stored);
  }
  mm->set_total_pages((off - image::kPageDataOffset) / kPage);
  return pieces;
}

void SplitShared(std::vector<PagePiece>* pieces, const std::vector<std::pair<uint64_t, uint64_t>>& shared) {
  if (shared.empty()) return;
  std::vector<PagePiece> out;
  size_t k = 0;
  for (const PagePiece& p : *pieces) {
    if (!p.readable) {
      out.push_back(p);
      continue;
    }
    const uint64_t end = p.vaddr + p.len;
    while (k < shared.size() && shared[k].second <= p.vaddr) ++k;
    uint64_t at = p.vaddr;
    auto emit = [&](uint64_t to, bool readable) {
      if (to <= at) return;
      out.push_back({at, to - at, p.file_off + (at - p.vaddr), readable});
      at = to;
    };
    for (size_t j = k; j < shared.size() && shared[j].first < end; ++j) {
      emit(std::max(at, shared[j].first), true);
      emit(std::min(end, shared[j].second), false);
    }
    emit(end, true);
  }
  *pieces = std::move(out);
}

namespace {

// The present anonymous pages of private VMAs that another process maps too
// (pagemap: present, not exclusively mapped, not a file or shmem page;
// Documentation/admin-guide/mm/pagemap.rst), as ascending ranges.
Result<std::vector<std::pair<uint64_t, uint64_t>>> SharedAnonPages(pid_t pid, const image::Mm& mm,
                                                                    const std::vector<PageRegion>& regions) {
  constexpr uint64_t kPresent = 1ull << 63, kFileOrShared = 1ull << 61, kExclusive = 1ull << 56;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  UniqueFd fd;
  std::vector<uint64_t> entries;
  for (const image::Vma& v : mm.vmas()) {
    if (v.kind() != image::VMA_ANON_PRIVATE && v.kind() != image::VMA_FILE_PRIVATE) continue;
    for (const PageRegion& r : regions) {
      const uint64_t s = std::max(r.start, v.start()), e = std::min(r.end, v.end());
      if (s >= e) continue;
      if (!fd.valid()) {
        const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
        fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) return Status::FromErrno("open " + path);
      }
      for (uint64_t a = s; a < e;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>((e - a) / kPage, 8192));
        entries.resize(n);
        const ssize_t want = static_cast<ssize_t>(n * 8);
        if (::pread(fd.get(), entries.data(), static_cast<size_t>(want), static_cast<off_t>(a / kPage * 8)) != want)
          return Status::FromErrno("reading /proc/" + std::to_string(pid) + "/pagemap at " + Hex(a));
        for (size_t i = 0; i < n; ++i) {
          const uint64_t x = entries[i];
          if (!(x & kPresent) || (x & kExclusive) || (x & kFileOrShared)) continue;
          const uint64_t page = a + i * kPage;
          if (!out.empty() && out.back().second == page)
            out.back().second += kPage;
          else
            out.emplace_back(page, page + kPage);
        }
        a += n * kPage;
      }
    }
  }
  return out;
}

}  // namespace

Result<std::vector<PagePiece>> PlanProcessPages(pid_t pid, image::Mm* mm, uint64_t block) {
  CRYO_ASSIGN_OR_RETURN(PagemapScanner scanner, PagemapScanner::Open(pid));
  // One PAGEMAP_SCAN per run of consecutive VMAs that may hold pages (gaps
  // hold none), rather than one per VMA (a process with many threads has a
  // stack VMA per thread); each VMA then takes its part of the regions.
  std::vector<PageRegion> regions;
  const auto& vmas = mm->vmas();
  for (int i = 0; i < vmas.size();) {
    if (!Planned(vmas[i])) {
      ++i;
      continue;
    }
    // Reading pagemap (no PAGEMAP_SCAN) would read the holes between VMAs
    // entry by entry: only VMAs that touch are scanned together then.
    const bool holes_free = scanner.method() == PagemapScanner::Method::kIoctl;
    int j = i;
    while (j + 1 < vmas.size() && Planned(vmas[j + 1]) &&
           (holes_free || vmas[j + 1].start() == vmas[j].end()))
      ++j;
    CRYO_ASSIGN_OR_RETURN(auto found, scanner.Scan(vmas[i].start(), vmas[j].end()));
    regions.insert(regions.end(), found.begin(), found.end());
    i = j + 1;
  }
  auto scan = [&regions](uint64_t start, uint64_t end) -> Result<std::vector<PageRegion>> {
    std::vector<PageRegion> out;
    auto it = std::lower_bound(regions.begin(), regions.end(), start,
                               [](const PageRegion& r, uint64_t a) { return r.end <= a; });
    for (; it != regions.end() && it->start < end; ++it)
      out.push_back({std::max(it->start, start), std::min(it->end, end), it->categories});
    return out;
  };
  CRYO_RETURN_IF_ERROR(TakeGuardRegions(
      pid, scanner, [](const image::Vma& v) { return WantPage(v.kind(), kPagePresent); }, &regions, mm));
  // Pages shared copy-on-write with the parent are stored in its image only.
  if (mm->inherited_size()) regions = WithoutRanges(regions, {mm->inherited().begin(), mm->inherited().end()});
  CRYO_ASSIGN_OR_RETURN(std::vector<PagePiece> pieces, PlanPages(mm, scan, block));
  RecordHugeRanges(regions, mm);
  CRYO_ASSIGN_OR_RETURN(auto shared, SharedAnonPages(pid, *mm, regions));
  SplitShared(&pieces, shared);
  for (image::Vma& v : *mm->mutable_vmas()) {
    uint64_t inherited = 0;
    for (const image::PageRange& r : mm->inherited())
      if (v.start() <= r.vaddr() && r.vaddr() < v.end()) inherited += r.npages();
    v.set_inherited_pages(inherited);
  }
  LOG_INFO("pid %d: storing %" PRIu64 " pages (%s)", pid, mm->total_pages(),
           FormatSize(mm->total_pages() * kPage).c_str());
  return pieces;
}

}  // namespace cryo
