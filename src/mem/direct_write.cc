#include "mem/direct_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/local_file.h"
#include "base/log.h"

namespace cryo {

namespace {
constexpr uint64_t kPage = 4096;
}  // namespace

DirectPageWriter DirectPageWriter::Open(WritableFile* file) {
  LocalFile* local = AsLocalFile(file);
  const int fd = local ? local->local_fd() : -1;
  if (fd < 0) return {};
  // STATX_DIOALIGN (Linux 6.1; not reported by every file system, tmpfs
  // takes O_DIRECT without it): where reported, 0 means no direct I/O on this
  // file, and more than a page is more than the ring's alignment.
  struct statx stx = {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
      (stx.stx_dio_offset_align == 0 || stx.stx_dio_offset_align > kPage || stx.stx_dio_mem_align > kPage)) {
    LOG_DEBUG("%s: written through the page cache: direct I/O alignment %u (memory %u) is not a page's",
              file->path().c_str(), stx.stx_dio_offset_align, stx.stx_dio_mem_align);
    return {};
  }
  // A second open file description: O_DIRECT set on the first one would hold
  // for the header's unaligned write too (and for anyone sharing it).
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd direct(::open(self.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
  if (!direct.valid()) {
    LOG_DEBUG("%s: written through the page cache: open with O_DIRECT: %s", file->path().c_str(), strerror(errno));
    return {};
  }
  return DirectPageWriter(std::move(direct), local, file->path());
}

Status DirectPageWriter::WriteAt(const char* data, size_t n, off_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_.get(), data, n, offset);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write to " + path_ + " (O_DIRECT)");
    }
    // A short write (the disk filling up) ends on a block; one that did not
    // would leave the rest unaligned for O_DIRECT.
    if (w == 0 || static_cast<uint64_t>(w) % kPage != 0)
      return Status::Errno(EIO, "write to " + path_ + " (O_DIRECT): short write of " + std::to_string(w) + " bytes");
    local_->WrittenElsewhere(offset, static_cast<size_t>(w));
    data += w;
    offset += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

}  // namespace cryo
