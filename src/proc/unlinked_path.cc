#include "proc/unlinked_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <string_view>
#include <vector>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "proc/proc.h"

namespace cryo::paths {

namespace {

constexpr std::string_view kDeleted = " (deleted)";

// statfs(2) f_type values (linux/magic.h).
constexpr unsigned long kSecretMem = 0x5345434d;
constexpr unsigned long kAioRing = 0xa10a10a1;
constexpr unsigned long kHugetlbFs = 0x958458f6;

bool LinkSaysDeleted(const std::string& link) {
  return link.size() > kDeleted.size() && link.compare(link.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

// Looks in `dir` (not below it) for an entry that is `dev`/`ino`.
std::string SearchDir(const std::string& dir, dev_t dev, ino_t ino, size_t* budget) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return "";
  DIR* d = ::fdopendir(fd.release());
  if (!d) return "";
  std::string found;
  while (struct dirent* e = ::readdir(d)) {
    if (*budget == 0) break;
    --*budget;
    if (e->d_ino != ino) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino) {
      found = (dir == "/" ? "" : dir) + "/" + e->d_name;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// A walk below `top` that stays on `dev` (no mount crossed).
std::string SearchTree(const std::string& top, dev_t dev, ino_t ino, size_t* budget) {
  std::vector<std::string> todo = {top};
  while (!todo.empty() && *budget > 0) {
    const std::string dir = std::move(todo.back());
    todo.pop_back();
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) continue;
    DIR* d = ::fdopendir(fd.release());
    if (!d) continue;
    const std::string base = dir == "/" ? "" : dir;
    while (struct dirent* e = ::readdir(d)) {
      if (*budget == 0) break;
      --*budget;
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      if (e->d_ino == ino) {
        struct stat st;
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino) {
          ::closedir(d);
          return base + "/" + e->d_name;
        }
      }
      if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) {
        struct stat st;
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) && st.st_dev == dev)
          todo.push_back(base + "/" + e->d_name);
      }
    }
    ::closedir(d);
  }
  return "";
}

}  // namespace

bool IsUnlinked(const Opened& o) { return LinkSaysDeleted(o.link) && o.st.st_nlink == 0; }

bool HasOtherName(const Opened& o) {
  return LinkSaysDeleted(o.link) && o.st.st_nlink > 0 && S_ISREG(o.st.st_mode) && !PseudoFileKind(o.fs_type) &&
         !StartsWith(o.link, "/memfd:");
}

const char* PseudoFileKind(long fs_type) {
  switch (static_cast<unsigned long>(fs_type)) {
    case kSecretMem: return "a memfd_secret area (memfd_secret(2)), whose memory not even the kernel reads for cryo";
    case kAioRing: return "a Linux AIO context (io_setup(2)), not supported yet";
    case kHugetlbFs: return "hugetlbfs memory, not supported yet";
    default: return nullptr;
  }
}

std::string WhyNotRecreatable(const Opened& o) {
  if (const char* kind = PseudoFileKind(o.fs_type)) return std::string("is ") + kind;
  if (const char* fs = UnreopenableFileSystem(o.fs_type))
    return "was deleted on " + std::string(fs) + ", where cryo cannot create it again";
  const std::string path = ShownPath(o);
  if (path.empty() || path[0] != '/') return "was deleted and has no path to recreate it under (" + o.link + ")";
  if (!S_ISREG(o.st.st_mode) && !S_ISDIR(o.st.st_mode) && !S_ISFIFO(o.st.st_mode))
    return "was deleted and is not a regular file, directory or FIFO, which cryo cannot create again";
  const std::string dir = RecreateDir(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || st.st_dev != o.st.st_dev)
    return "was deleted, and the directory it would be created again in (" + dir +
           ") is not on its file system any more";
  return "";
}

std::string RecreateDir(const std::string& path) {
  std::string dir = Parent(path);
  for (;;) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return dir;
    if (dir == "/") return dir;
    dir = Parent(dir);
  }
}

Result<std::string> FindOtherName(const Opened& o, size_t budget) {
  const dev_t dev = o.st.st_dev;
  const ino_t ino = o.st.st_ino;
  const std::string dir = RecreateDir(ShownPath(o));
  std::string found = SearchDir(dir, dev, ino, &budget);
  if (!found.empty()) return found;
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/mountinfo"));
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::MountInfo> mounts, proc::ParseMountInfo(text));
  std::vector<std::string> searched;
  for (const proc::MountInfo& m : mounts) {
    struct stat st;
    if (::stat(m.mount_point.c_str(), &st) != 0 || st.st_dev != dev) continue;
    searched.push_back(m.mount_point);
    found = SearchTree(m.mount_point, dev, ino, &budget);
    if (!found.empty()) return found;
  }
  std::string where = dir;
  for (const std::string& s : searched) where += ", " + s;
  return Status::Error("was deleted but still has " + std::to_string(o.st.st_nlink) +
                       (o.st.st_nlink == 1 ? " link" : " links") + ", which cryo did not find (looked in " + where +
                       (budget == 0 ? ", stopped after too many entries" : "") + ")");
}

}  // namespace cryo::paths
