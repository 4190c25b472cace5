#include "mem/cow_share.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "base/unique_fd.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPresent = 1ull << 63, kPfnMask = (1ull << 55) - 1;
constexpr size_t kBatch = 8192;  // pagemap entries per read

Result<UniqueFd> OpenPagemap(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  return fd;
}

Status ReadEntries(int fd, pid_t pid, uint64_t addr, size_t n, uint64_t* out) {
  const ssize_t want = static_cast<ssize_t>(n * 8);
  if (::pread(fd, out, static_cast<size_t>(want), static_cast<off_t>(addr / kPage * 8)) != want)
    return Status::FromErrno("reading /proc/" + std::to_string(pid) + "/pagemap");
  return Status::Ok();
}

void Append(std::vector<image::PageRange>* out, uint64_t addr) {
  if (!out->empty()) {
    image::PageRange& last = out->back();
    if (last.vaddr() + last.npages() * kPage == addr) {
      last.set_npages(last.npages() + 1);
      return;
    }
  }
  image::PageRange& r = out->emplace_back();
  r.set_vaddr(addr);
  r.set_npages(1);
}

}  // namespace

Result<std::vector<image::PageRange>> FindInheritedPages(pid_t child, const image::Mm& child_mm, pid_t parent,
                                                         const image::Mm& parent_mm) {
  std::vector<image::PageRange> out;
  UniqueFd cfd, pfd;
  std::vector<uint64_t> ce(kBatch), pe(kBatch);
  for (const image::Vma& v : child_mm.vmas()) {
    // hugetlb pages are stored by each process: the restore's premaps of
    // them are not forked (mem/hugetlb.h).
    if (v.kind() != image::VMA_ANON_PRIVATE || v.huge_page_size()) continue;
    const bool in_parent = std::any_of(parent_mm.vmas().begin(), parent_mm.vmas().end(), [&](const image::Vma& p) {
      return p.kind() == image::VMA_ANON_PRIVATE && p.start() <= v.start() && v.end() <= p.end();
    });
    if (!in_parent) continue;
    if (!cfd.valid()) {
      CRYO_ASSIGN_OR_RETURN(cfd, OpenPagemap(child));
      CRYO_ASSIGN_OR_RETURN(pfd, OpenPagemap(parent));
    }
    for (uint64_t a = v.start(); a < v.end();) {
      const size_t n = std::min<uint64_t>(kBatch, (v.end() - a) / kPage);
      CRYO_RETURN_IF_ERROR(ReadEntries(cfd.get(), child, a, n, ce.data()));
      CRYO_RETURN_IF_ERROR(ReadEntries(pfd.get(), parent, a, n, pe.data()));
      for (size_t i = 0; i < n; ++i) {
        const uint64_t c = ce[i], p = pe[i];
        if ((c & kPresent) && (p & kPresent) && (c & kPfnMask) && (c & kPfnMask) == (p & kPfnMask))
          Append(&out, a + i * kPage);
      }
      a += n * kPage;
    }
  }
  return out;
}

std::vector<PageRegion> WithoutRanges(const std::vector<PageRegion>& regions,
                                      const std::vector<image::PageRange>& skip) {
  std::vector<PageRegion> out;
  size_t k = 0;
  for (PageRegion r : regions) {
    while (k < skip.size() && skip[k].vaddr() + skip[k].npages() * kPage <= r.start) ++k;
    for (size_t j = k; j < skip.size() && skip[j].vaddr() < r.end && r.start < r.end; ++j) {
      const uint64_t s = skip[j].vaddr(), e = s + skip[j].npages() * kPage;
      if (s > r.start) out.push_back({r.start, std::min(s, r.end), r.categories});
      r.start = std::max(r.start, e);
    }
    if (r.start < r.end) out.push_back(r);
  }
  return out;
}

}  // namespace cryo
