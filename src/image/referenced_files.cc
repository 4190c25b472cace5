#include "image/referenced_files.h"

#include <fcntl.h>

#include <algorithm>
#include <map>
#include <string>

namespace cryo::image {

namespace {

bool IsDeleted(const std::string& p) { return p.size() > 10 && p.compare(p.size() - 10, 10, " (deleted)") == 0; }

// Files of /proc and /sys are made by the kernel at each read: their size,
// mtime and even inode (procfs inodes come and go with their dentries) say
// nothing of what a process read from them.
bool KernelMade(const std::string& p) {
  for (const char* dir : {"/proc", "/sys"}) {
    const size_t n = std::char_traits<char>::length(dir);
    if (p.compare(0, n, dir) == 0 && (p.size() == n || p[n] == '/')) return true;
  }
  return false;
}

bool SameRecord(const FileId& a, const FileId& b) {
  return a.dev() == b.dev() && a.ino() == b.ino() && a.size() == b.size() && a.mtime_ns() == b.mtime_ns() &&
         a.mode() == b.mode() && a.has_content_xxh3() == b.has_content_xxh3() && a.content_xxh3() == b.content_xxh3();
}

class Collector {
 public:
  void Add(const FileId& id, FileCheck check, const std::string& holder) {
    if (id.path().empty() || id.path()[0] != '/' || IsDeleted(id.path()) || KernelMade(id.path())) return;
    auto [it, fresh] = files_.try_emplace(id.path());
    ReferencedFile& f = it->second;
    if (fresh) {
      f.path = id.path();
      f.recorded = id;
    } else if (id.has_content_xxh3() && !f.recorded.has_content_xxh3()) {
      f.recorded = id;
    }
    if (std::none_of(f.records.begin(), f.records.end(), [&](const FileId& r) { return SameRecord(r, id); }))
      f.records.push_back(id);
    if (check == FileCheck::kContent) f.check = FileCheck::kContent;
    if (std::find(f.holders.begin(), f.holders.end(), holder) == f.holders.end()) f.holders.push_back(holder);
  }
  std::vector<ReferencedFile> Take() {
    std::vector<ReferencedFile> out;
    for (auto& [path, f] : files_) out.push_back(std::move(f));
    return out;
  }

 private:
  std::map<std::string, ReferencedFile> files_;
};

FileCheck FdCheck(const Fd& f) {
  if (f.kind() == FD_DIRECTORY || (f.flags() & O_PATH)) return FileCheck::kIdentity;
  if ((f.flags() & O_ACCMODE) == O_WRONLY && (f.flags() & O_APPEND)) return FileCheck::kIdentity;
  return FileCheck::kContent;
}

}  // namespace

std::vector<ReferencedFile> ReferencedFiles(const LoadedImage& img) {
  Collector c;
  for (const auto& [pid, p] : img.processes) {
    const std::string of = " of pid " + std::to_string(pid);
    if (p.core.has_exe_file()) c.Add(p.core.exe_file(), FileCheck::kContent, "executable" + of);
    if (p.core.has_cwd_file()) c.Add(p.core.cwd_file(), FileCheck::kIdentity, "working directory" + of);
    if (p.core.has_root_file()) c.Add(p.core.root_file(), FileCheck::kIdentity, "root directory" + of);
    for (const Fd& f : p.fds.fds())
      if ((f.kind() == FD_REGULAR || f.kind() == FD_DIRECTORY) && f.has_file())
        c.Add(f.file(), FdCheck(f), "fd " + std::to_string(f.fd()) + of);
    for (const Vma& v : p.mm.vmas())
      if ((v.kind() == VMA_FILE_PRIVATE || v.kind() == VMA_FILE_SHARED) && !v.shm_object() && !v.unlinked_file() &&
          v.has_file())
        c.Add(v.file(), FileCheck::kContent, "mapped by pid " + std::to_string(pid));
  }
  return c.Take();
}

std::string HoldersText(const ReferencedFile& f, size_t max_shown) {
  std::string out;
  for (size_t i = 0; i < f.holders.size() && i < max_shown; ++i) out += (i ? ", " : "") + f.holders[i];
  if (f.holders.size() > max_shown) out += " and " + std::to_string(f.holders.size() - max_shown) + " more";
  return out;
}

}  // namespace cryo::image
