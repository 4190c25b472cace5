// files.img validation (the table of unlinked files, files/unlinked_*.h).
#include <map>
#include <string>

#include "image/format.h"
#include "image/image_dir.h"

namespace cryo::image {

namespace {

constexpr uint64_t kMaxExtent = 8ull << 20;

bool SafePath(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos && p.find("/../") == std::string::npos &&
         (p.size() < 3 || p.compare(p.size() - 3, 3, "/..") != 0);
}

}  // namespace

Status ValidateUnlinkedFiles(const LoadedImage& img) {
  const std::string what = img.dir + "/" + FilesName();
  std::map<uint64_t, const UnlinkedFile*> by_id;
  uint64_t expect_off = kPageDataOffset;
  for (const UnlinkedFile& f : img.files.files()) {
    if (f.id() == 0 || !by_id.emplace(f.id(), &f).second) return Status::Error(what + ": file ids are not unique (corrupted)");
    const std::string file = what + ": file " + std::to_string(f.id());
    if (f.kind() != UNLINKED_REGULAR && f.kind() != UNLINKED_DIRECTORY)
      return Status::Error(file + ": unknown kind " + std::to_string(f.kind()));
    if (!SafePath(f.path())) return Status::Error(file + ": path \"" + f.path() + "\" is not an absolute path (corrupted)");
    if (f.kind() == UNLINKED_DIRECTORY && (f.size() || f.extents_size()))
      return Status::Error(file + ": a directory with content (corrupted)");
    uint64_t prev_end = 0;
    for (const FileExtent& e : f.extents()) {
      if (e.data_offset() != expect_off || e.length() == 0 || e.length() > kMaxExtent || e.offset() < prev_end ||
          e.offset() + e.length() < e.offset() || e.offset() + e.length() > f.size())
        return Status::Error(file + ": content extents are malformed (corrupted)");
      prev_end = e.offset() + e.length();
      expect_off += e.length();
    }
  }
  if (expect_off - kPageDataOffset != img.files.data_size())
    return Status::Error(what + ": content size does not match the extents (corrupted)");
  // Every holder names a file of the table, of a kind it can hold.
  auto check = [&](uint64_t id, UnlinkedKind kind, const std::string& holder) -> Status {
    auto it = by_id.find(id);
    if (it == by_id.end() || (kind != UNLINKED_UNKNOWN && it->second->kind() != kind))
      return Status::Error(holder + " names unlinked file " + std::to_string(id) + ", which does not fit it (corrupted)");
    return Status::Ok();
  };
  for (const auto& [pid, p] : img.processes) {
    const std::string core = img.dir + "/" + CoreName(pid);
    if (p.core.cwd_unlinked())
      CRYO_RETURN_IF_ERROR(check(p.core.cwd_unlinked(), UNLINKED_DIRECTORY, core + ": the working directory"));
    if (p.core.exe_unlinked())
      CRYO_RETURN_IF_ERROR(check(p.core.exe_unlinked(), UNLINKED_REGULAR, core + ": the executable"));
    for (const Vma& v : p.mm.vmas()) {
      if (!v.unlinked_file()) continue;
      if (v.kind() != VMA_FILE_SHARED && v.kind() != VMA_FILE_PRIVATE)
        return Status::Error(img.dir + "/" + MmName(pid) + ": a VMA that maps no file names an unlinked file (corrupted)");
      CRYO_RETURN_IF_ERROR(check(v.unlinked_file(), UNLINKED_REGULAR, img.dir + "/" + MmName(pid) + ": a VMA"));
    }
    for (const Fd& f : p.fds.fds()) {
      if (f.kind() != FD_UNLINKED_FILE && !f.unlinked_file()) continue;
      if (f.kind() != FD_UNLINKED_FILE)
        return Status::Error(img.dir + "/" + FdsName(pid) + ": fd " + std::to_string(f.fd()) +
                             " is no unlinked file but names one (corrupted)");
      CRYO_RETURN_IF_ERROR(
          check(f.unlinked_file(), UNLINKED_UNKNOWN, img.dir + "/" + FdsName(pid) + ": fd " + std::to_string(f.fd())));
    }
  }
  return Status::Ok();
}

}  // namespace cryo::image
