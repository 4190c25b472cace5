#include "image/parent_chain.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "image/format.h"
#include "image/image_file.h"

namespace cryo::image {

namespace {

constexpr uint64_t kMaxRunPages = (4u << 20) / kPageSize;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string ParentDir(const std::string& dir, const ParentImage& parent) {
  if (!parent.dir().empty() && parent.dir()[0] == '/') return parent.dir();
  // As the kernel resolves dir/../x (dir's symbolic links followed first),
  // which is how the dump made the relative name (incremental.cc).
  std::error_code ec;
  std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::path(dir), ec);
  if (ec) return dir + "/" + parent.dir();
  return (p / parent.dir()).lexically_normal().string();
}

Status LoadAncestors(LoadedImage* img) {
  img->ancestors.clear();
  std::string child_dir = img->dir;
  const Inventory* child = &img->inventory;
  while (child->has_parent()) {
    const ParentImage& link = child->parent();
    const std::string named_by = child_dir + " (an incremental image)";
    if (img->ancestors.size() == kMaxParentDepth)
      return Status::Error(img->dir + ": its chain of parent images is longer than " +
                           std::to_string(kMaxParentDepth) + " (corrupted)");
    if (link.dir().empty() || link.dir().find('\0') != std::string::npos || link.image_id().size() != kImageIdSize)
      return Status::Error(child_dir + "/" + InventoryName() + ": the parent image is named malformed (corrupted)");
    AncestorImage a;
    a.dir = ParentDir(child_dir, link);
    struct stat st;
    if (::stat(a.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Status::Errno(errno ? errno : ENOTDIR, "the parent image " + a.dir + " of " + named_by +
                                                       " is missing: its pages are needed to restore it");
    if (::lstat((a.dir + "/" + IncompleteMarkerName()).c_str(), &st) == 0)
      return Status::Error("the parent image " + a.dir + " of " + named_by + " is incomplete (" + kIncompleteImage + ")");
    Status s = ReadInventory(a.dir, &a.inventory, &a.identity);
    if (!s.ok()) return s.Prefixed("the parent image " + a.dir + " of " + named_by);
    if (a.identity.image_id != link.image_id())
      return Status::Error("the parent image " + a.dir + " of " + named_by + " is image " +
                           ImageIdHex(a.identity.image_id) + ", not the image " + ImageIdHex(link.image_id()) +
                           " it was dumped against (replaced or dumped again since): refusing to restore from it");
    child_dir = a.dir;
    img->ancestors.push_back(std::move(a));
    child = &img->ancestors.back().inventory;
  }
  return Status::Ok();
}

Result<std::vector<PageSource>> OpenAncestorPageFiles(const LoadedImage& img, int pid) {
  std::vector<PageSource> fds(img.ancestors.size());
  const Mm& mm = img.processes.at(pid).mm;
  for (const PageRun& r : mm.parent_runs()) {
    if (r.depth() == 0 || r.depth() > img.ancestors.size())
      return Status::Error(img.dir + "/" + MmName(pid) + ": page run at " + Hex(r.vaddr()) +
                           " names parent image depth " + std::to_string(r.depth()) + ", the chain has " +
                           std::to_string(img.ancestors.size()) + " (corrupted)");
    const AncestorImage& a = img.ancestors[r.depth() - 1];
    const std::string name = PagesName(pid);
    PageSource& src = fds[r.depth() - 1];
    if (!src.valid()) {
      FileHeader h;
      const bool compressed_ok = std::find(a.inventory.features().begin(), a.inventory.features().end(),
                                           "compressed-pages") != a.inventory.features().end();
      CRYO_ASSIGN_OR_RETURN(src, PageSource::Open(a.dir, a.identity, name, compressed_ok, &h));
    }
    // Offsets are the uncompressed page data's, in a compressed file too.
    if (r.offset() < kPageDataOffset || r.offset() % kPageSize || r.npages() > kMaxRunPages ||
        r.offset() + r.npages() * kPageSize > src.end())
      return Status::Error(img.dir + "/" + MmName(pid) + ": page run at " + Hex(r.vaddr()) + " lies outside " +
                           src.path() + " (corrupted)");
  }
  return fds;
}

}  // namespace cryo::image
