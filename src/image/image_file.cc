#include "image/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cryo::image {

namespace {

const char* TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFDIR: return "a directory";
    case S_IFSOCK: return "a socket";
    default: return "not a regular file";
  }
}

}  // namespace

Result<UniqueFd> OpenImageFile(const std::string& path, uint64_t* size) {
  // O_PATH opens nothing: no device open routine runs, no FIFO blocks. With
  // O_NOFOLLOW it gives the symbolic link itself (open(2)).
  UniqueFd where(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!where.valid()) return Status::FromErrno("open " + path);
  struct stat st;
  if (::fstat(where.get(), &st) != 0) return Status::FromErrno("stat " + path);
  if (!S_ISREG(st.st_mode))
    return Status::Error(path + " is " + TypeName(st.st_mode) + ": image files must be regular files");
  // The same inode, now for reading (proc(5): /proc/self/fd reopens the file).
  const std::string self = "/proc/self/fd/" + std::to_string(where.get());
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

Result<std::string> ReadWholeFile(int fd, uint64_t size, const std::string& path) {
  std::string out(size, '\0');
  uint64_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, &out[got], size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read " + path);
    if (n == 0) return Status::Error(path + " shrank while it was read (changed under cryo)");
    got += static_cast<uint64_t>(n);
  }
  char extra;
  if (::pread(fd, &extra, 1, static_cast<off_t>(size)) > 0)
    return Status::Error(path + " grew while it was read (changed under cryo)");
  return out;
}

Status CheckFileHeader(const std::string& path, const uint8_t* data, size_t n, FileKind kind, FileHeader* h) {
  std::string why;
  if (!DecodeHeader(data, n, h, &why)) return Status::Error(path + ": " + why);
  if (h->format_version > kFormatVersion)
    return Status::Error(path + ": image format version " + std::to_string(h->format_version) +
                         " is newer than this cryo supports (" + std::to_string(kFormatVersion) +
                         "); restore it with a newer cryo");
  if (h->format_version == 0) return Status::Error(path + ": image format version 0 is invalid (corrupted)");
  if (h->kind != kind)
    return Status::Error(path + ": expected a " + FileKindName(kind) + " file, found kind " +
                         std::to_string(static_cast<uint32_t>(h->kind)));
  return Status::Ok();
}

Status ImageIdentity::CheckHeader(const std::string& path, const std::string& name, const FileHeader& h) const {
  if (h.format_version != format_version || h.image_id != image_id)
    return Status::Error(path + ": " + name + " belongs to another image (format " +
                         std::to_string(h.format_version) + ", image id " + ImageIdHex(h.image_id) +
                         "; this image's inventory: format " + std::to_string(format_version) + ", image id " +
                         ImageIdHex(image_id) + ")");
  return Status::Ok();
}

Status ImageIdentity::CheckSize(const std::string& path, const std::string& name, uint64_t size,
                                bool page_file) const {
  if (format_version >= 2) {
    auto it = sizes.find(name);
    if (it == sizes.end())
      return Status::Error(path + ": the inventory does not list " + name + " (a file of another image, or corrupted)");
    if (it->second != size)
      return Status::Error(path + ": holds " + std::to_string(size) + " bytes, the inventory says " +
                           std::to_string(it->second) + " (truncated, replaced or corrupted)");
  }
  if (!page_file && size > kMaxRecordBytes)
    return Status::Error(path + ": " + std::to_string(size) + " bytes, more than the " +
                         std::to_string(kMaxRecordBytes) + " a record may have (corrupted)");
  return Status::Ok();
}

}  // namespace cryo::image
