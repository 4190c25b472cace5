// How a reader opens the files of an image directory. An image directory is
// input cryo did not necessarily write: a file may have been replaced by a
// symbolic link, a FIFO, a device node or a huge sparse file, or copied in
// from another image. Every file is therefore opened without following a
// symbolic link and without opening anything but a regular file (O_PATH first:
// opening a device node can have effects of its own, a FIFO blocks), every
// read is bounded by the size the inventory records for the file, and every
// header must carry the image's format version and id.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"
#include "image/format.h"

namespace cryo::image {

// Metadata files are read whole into memory and parsed by protobuf, which
// takes at most 2 GiB. Hard caps for files whose size no inventory records:
// inventory.img itself, and every file of a format 1 image.
inline constexpr uint64_t kMaxInventoryBytes = 64ull << 20;
inline constexpr uint64_t kMaxRecordBytes = 1ull << 30;

// What every file of one image agrees on, from its inventory.img.
struct ImageIdentity {
  uint32_t format_version = 0;  // of inventory.img's header
  std::string image_id;         // kImageIdSize bytes; empty in format 1
  // Format 2: the size of every other file (Inventory.files).
  std::map<std::string, uint64_t> sizes;

  // The file `name` belongs to this image: its header has the image's format
  // version and id. `path` names it in messages.
  Status CheckHeader(const std::string& path, const std::string& name, const FileHeader& h) const;
  // File `name` may hold `size` bytes: exactly the inventory's size (format 2;
  // a file it does not list is refused); a metadata file at most
  // kMaxRecordBytes in any format.
  Status CheckSize(const std::string& path, const std::string& name, uint64_t size, bool page_file) const;
};

// Opens `path` read-only: refuses a symbolic link, and anything but a regular
// file, without opening it. `size` gets its size.
Result<UniqueFd> OpenImageFile(const std::string& path, uint64_t* size);
// Reads a whole file of `size` bytes (as fstat gave it) from `fd`.
Result<std::string> ReadWholeFile(int fd, uint64_t size, const std::string& path);
// Decodes and checks the header of a file against the kind expected: magic,
// a version this cryo reads, the kind.
Status CheckFileHeader(const std::string& path, const uint8_t* data, size_t n, FileKind kind, FileHeader* h);

}  // namespace cryo::image
