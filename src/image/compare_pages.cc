#include "image/compare_pages.h"

#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include "image/format.h"
#include "image/image_dir.h"
#include "image/parent_chain.h"

namespace cryo::image {

namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Where each stored page of a process is: (page file, offset) by address.
struct PageMap {
  PageSource own;
  std::vector<PageSource> parents;
  std::map<uint64_t, std::pair<const PageSource*, uint64_t>> pages;
};

Status MapPages(const LoadedImage& img, int pid, PageMap* m) {
  CRYO_ASSIGN_OR_RETURN(m->own, OpenPageFile(img, pid));
  CRYO_ASSIGN_OR_RETURN(m->parents, OpenAncestorPageFiles(img, pid));
  const Mm& mm = img.processes.at(pid).mm;
  for (const PageRun& r : mm.runs())
    for (uint64_t i = 0; i < r.npages(); ++i)
      m->pages[r.vaddr() + i * kPageSize] = {&m->own, r.offset() + i * kPageSize};
  for (const PageRun& r : mm.parent_runs())
    for (uint64_t i = 0; i < r.npages(); ++i)
      m->pages[r.vaddr() + i * kPageSize] = {&m->parents[r.depth() - 1], r.offset() + i * kPageSize};
  return Status::Ok();
}

Status ReadPage(const PageSource* src, uint64_t off, char* out) { return src->Read(out, kPageSize, off); }

}  // namespace

Result<std::string> ComparePages(const std::string& a_dir, const std::string& b_dir) {
  CRYO_ASSIGN_OR_RETURN(LoadedImage a, LoadImage(a_dir));
  CRYO_ASSIGN_OR_RETURN(LoadedImage b, LoadImage(b_dir));
  uint64_t compared = 0, processes = 0;
  char pa[kPageSize], pb[kPageSize];
  for (const auto& [pid, pa_img] : a.processes) {
    auto it = b.processes.find(pid);
    if (it == b.processes.end()) return Status::Error("pid " + std::to_string(pid) + " is in " + a_dir + " only");
    if (pa_img.core.zombie() || it->second.core.zombie()) continue;
    PageMap ma, mb;
    CRYO_RETURN_IF_ERROR(MapPages(a, pid, &ma));
    CRYO_RETURN_IF_ERROR(MapPages(b, pid, &mb));
    for (const auto& [addr, where] : ma.pages) {
      auto w = mb.pages.find(addr);
      if (w == mb.pages.end())
        return Status::Error("pid " + std::to_string(pid) + ": the page at " + Hex(addr) + " is stored in " + a_dir +
                             " only");
      CRYO_RETURN_IF_ERROR(ReadPage(where.first, where.second, pa));
      CRYO_RETURN_IF_ERROR(ReadPage(w->second.first, w->second.second, pb));
      if (std::memcmp(pa, pb, kPageSize) != 0)
        return Status::Error("pid " + std::to_string(pid) + ": the page at " + Hex(addr) + " differs");
      ++compared;
    }
    for (const auto& [addr, where] : mb.pages)
      if (!ma.pages.count(addr))
        return Status::Error("pid " + std::to_string(pid) + ": the page at " + Hex(addr) + " is stored in " + b_dir +
                             " only");
    ++processes;
  }
  for (const auto& [pid, p] : b.processes)
    if (!a.processes.count(pid)) return Status::Error("pid " + std::to_string(pid) + " is in " + b_dir + " only");
  return std::to_string(processes) + " processes, " + std::to_string(compared) + " pages identical";
}

}  // namespace cryo::image
