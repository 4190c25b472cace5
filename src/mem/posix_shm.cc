#include "mem/posix_shm.h"
#include "mem/shm_object.h"
#include "base/janitor.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cryo {

namespace {

constexpr std::string_view kDir = "/dev/shm/";
constexpr const char* kTempPrefix = ".cryo-restore";

// Temporary files of restores that were killed along with their janitor
// (base/janitor.h): their names say which cryo made them, and it is gone.
void RemoveStaleTemps(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* e = ::readdir(d))
    if (IsStaleTempName(kTempPrefix, e->d_name)) ::unlinkat(::dirfd(d), e->d_name, 0);
  ::closedir(d);
}

Status CheckHugetlbfsDir(const std::string& dir, uint64_t page_size, const std::string& what) {
  struct statfs sf;
  if (::statfs(dir.c_str(), &sf) != 0) return Status::FromErrno(what + ": statfs of its directory " + dir);
  if (static_cast<unsigned long>(sf.f_type) != HUGETLBFS_MAGIC)
    return Status::Error(what + ": its directory " + dir + " is no longer on a hugetlbfs mount (mount one there: "
                         "mount -t hugetlbfs -o pagesize=" + std::to_string(page_size >> 10) + "K none DIR)");
  if (static_cast<uint64_t>(sf.f_bsize) != page_size)
    return Status::Error(what + ": the hugetlbfs mount of " + dir + " has pages of " +
                         std::to_string(static_cast<uint64_t>(sf.f_bsize) >> 10) + " KiB, the image's file " +
                         std::to_string(page_size >> 10) + " KiB");
  return Status::Ok();
}

}  // namespace

bool IsPosixShm(std::string_view path, dev_t dev) {
  if (!path.starts_with(kDir) || path.size() == kDir.size()) return false;
  static const dev_t shm_dev = [] {
    struct stat st;
    return ::stat("/dev/shm", &st) == 0 ? st.st_dev : static_cast<dev_t>(-1);
  }();
  return dev == shm_dev;
}

Result<int> CreatePosixShmFile(const image::ShmObject& obj, std::string* temp_path) {
  const std::string& path = obj.name();
  const bool huge = obj.huge_page_size() != 0;
  const std::string what = (huge ? "hugetlbfs file " : "POSIX shared memory ") + path + " (shared memory object " +
                           std::to_string(obj.id()) + ")";
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || path.find("/../") != std::string::npos ||
      (!huge && path.compare(0, kDir.size(), kDir) != 0))
    return Status::Error(what + (huge ? ": not an absolute path" : ": not a path under /dev/shm"));
  const std::string dir = path.substr(0, slash + 1);
  // A hugetlbfs file is made again on the mount its path names, which must be
  // one of the image's page size (mem/hugetlb.h).
  if (huge) CRYO_RETURN_IF_ERROR(CheckHugetlbfsDir(dir, obj.huge_page_size(), what));
  RemoveStaleTemps(dir);
  // Named after this cryo (pid and start time), so that a later one knows it
  // is left over if neither this cryo nor its janitor could remove it.
  const std::string temp = dir + OwnTempName(kTempPrefix, std::to_string(obj.id()));
  if (Janitor* j = CurrentJanitor()) CRYO_RETURN_IF_ERROR(j->WillCreateFile(temp).Prefixed(what));
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("creating " + temp + " for " + what);
  *temp_path = temp;
  Status st = ShapeShmFile(fd, obj, what);
  if (!st.ok()) {
    ::close(fd);
    return st;
  }
  return fd;
}

Status PublishPosixShmFile(const image::ShmObject& obj, const std::string& temp_path,
                           std::vector<std::string>* warnings) {
  const std::string& path = obj.name();
  if (!obj.unlinked()) {
    if (::rename(temp_path.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + temp_path + " to " + path);
    return Status::Ok();
  }
  // The name an unlinked file shows is the one it had when it was unlinked.
  if (::renameat2(AT_FDCWD, temp_path.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path + " (restored unlinked)");
    return Status::Ok();
  }
  if (errno != EEXIST) return Status::FromErrno("rename " + temp_path + " to " + path);
  warnings->push_back(std::string(obj.huge_page_size() ? "unlinked hugetlbfs file " : "unlinked POSIX shared memory ") + path + " is restored as " + temp_path +
                      " (deleted): another file holds its name now");
  if (::unlink(temp_path.c_str()) != 0) return Status::FromErrno("unlink " + temp_path);
  return Status::Ok();
}

}  // namespace cryo
