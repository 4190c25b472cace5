#include "dump/postcopy_pages.h"

#include <algorithm>
#include <memory>
#include <string>

#include "image/format.h"
#include "mem/lazy_plan.h"

namespace cryo {

Status DumpPagesPostCopy(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                         std::vector<std::pair<uint64_t, uint64_t>>* remote) {
  constexpr uint64_t kPage = image::kPageSize;
  std::unique_ptr<ProcessPageSource> src;
  std::string buf;
  bool last_remote = false;
  uint64_t end = image::kPageDataOffset;
  size_t vi = 0;
  for (image::PageRun& r : *mm->mutable_runs()) {
    const uint64_t len = r.npages() * kPage;
    end = std::max(end, r.offset() + len);
    // Runs and VMAs both go up in address.
    while (vi < static_cast<size_t>(mm->vmas_size()) && mm->vmas(static_cast<int>(vi)).end() <= r.vaddr()) ++vi;
    if (vi == static_cast<size_t>(mm->vmas_size()) || mm->vmas(static_cast<int>(vi)).start() > r.vaddr())
      return Status::Error("internal: no VMA holds the page run at " + std::to_string(r.vaddr()));
    last_remote = LazyEligibleVma(mm->vmas(static_cast<int>(vi)));
    if (last_remote) {
      r.set_remote(true);
      r.set_checksum(0);
      remote->emplace_back(r.vaddr(), len);
      continue;
    }
    // The parts of the pieces (file order, contiguous) in this run's bytes.
    std::vector<PagePiece> parts;
    for (const PagePiece& p : pieces) {
      const uint64_t lo = std::max(p.file_off, r.offset()), hi = std::min(p.file_off + p.len, r.offset() + len);
      if (lo >= hi) continue;
      PagePiece part = p;
      part.vaddr = p.vaddr + (lo - p.file_off);
      part.file_off = lo;
      part.len = hi - lo;
      parts.push_back(part);
    }
    if (!src) {
      CRYO_ASSIGN_OR_RETURN(src, ProcessPageSource::Open(pid));
    }
    buf.resize(len);
    CRYO_RETURN_IF_ERROR(src->Read(parts.data(), parts.size(), buf.data()));
    r.set_checksum(image::HashBytes(buf.data(), len));
    CRYO_RETURN_IF_ERROR(file->WriteAt(buf.data(), len, static_cast<off_t>(r.offset())));
  }
  // The file's last byte written, so that it has its whole size on the
  // receiver (a hole there reads as zeros, never read: the run is remote).
  if (last_remote) {
    const char zero = 0;
    CRYO_RETURN_IF_ERROR(file->WriteAt(&zero, 1, static_cast<off_t>(end - 1)));
  }
  return Status::Ok();
}

}  // namespace cryo
