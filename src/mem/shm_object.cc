#include "mem/shm_object.h"

#include <sys/stat.h>
#include <unistd.h>

namespace cryo {

Status ShapeShmFile(int fd, const image::ShmObject& obj, const std::string& what) {
  if (::fchown(fd, obj.uid(), obj.gid()) != 0) return Status::FromErrno("fchown of " + what);
  if (::fchmod(fd, obj.mode() & 07777) != 0) return Status::FromErrno("fchmod of " + what);
  if (::ftruncate(fd, static_cast<off_t>(obj.size())) != 0)
    return Status::FromErrno("ftruncate of " + what + " to " + std::to_string(obj.size()));
  return Status::Ok();
}

}  // namespace cryo
