#include "files/file_attrs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cryo {

void RecordFileAttrs(const struct stat& st, image::FileAttrs* out) {
  out->set_uid(st.st_uid);
  out->set_gid(st.st_gid);
  out->set_mode(st.st_mode & 07777);
  out->set_atime_ns(st.st_atim.tv_sec * 1000000000ll + st.st_atim.tv_nsec);
  out->set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
}

Status ApplyFileAttrs(int fd, const image::FileAttrs& a, const std::string& what) {
  // Through /proc/self/fd: chmod and utimensat of an O_PATH fd (fchmod and
  // futimens refuse one, open(2)).
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  // Owner first: a chown clears set-user-ID and set-group-ID bits (chown(2)).
  if (::fchownat(fd, "", a.uid(), a.gid(), AT_EMPTY_PATH) != 0)
    return Status::FromErrno("chown " + std::to_string(a.uid()) + ":" + std::to_string(a.gid()) + " of " + what);
  if (::chmod(self.c_str(), a.mode() & 07777) != 0) return Status::FromErrno("chmod of " + what);
  const struct timespec times[2] = {{a.atime_ns() / 1000000000, a.atime_ns() % 1000000000},
                                    {a.mtime_ns() / 1000000000, a.mtime_ns() % 1000000000}};
  if (::utimensat(AT_FDCWD, self.c_str(), times, 0) != 0) return Status::FromErrno("setting the times of " + what);
  return Status::Ok();
}

}  // namespace cryo
