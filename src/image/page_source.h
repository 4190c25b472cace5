// Reading the page data of a page file by offset, whether it is stored raw
// (kind 5) or in compressed frames (kind kCompressedPages, page_frames.h). A
// read decompresses only the frames it touches; every frame's checksum is
// checked before it is decompressed, and it must decompress to exactly its
// chunk's size: a corrupted frame is an error naming the file and the frame,
// never a crash or a page of zeros. Reads are safe from several threads; each
// thread keeps the last frame it decompressed for a part of a chunk, so page
// by page reads (show --compare-pages, small runs) decompress a frame once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "image/image_file.h"
#include "image/page_frames.h"

namespace cryo::image {

class PageSource {
 public:
  PageSource() = default;
  PageSource(PageSource&&) = default;
  PageSource& operator=(PageSource&&) = default;

  // Opens the data file `name` of the image in `dir` (`identity`): its header
  // (h, the file's size as the inventory lists it in `size`), and for a
  // compressed file its frame descriptor and whole frame index, checked.
  // `compressed_ok`: the image lists the feature "compressed-pages" (else a
  // compressed file is refused).
  static Result<PageSource> Open(const std::string& dir, const ImageIdentity& identity, const std::string& name,
                                 bool compressed_ok, FileHeader* h);

  bool valid() const { return fd_.valid(); }
  bool compressed() const { return !frames_.empty() || descriptor_.frame_count; }
  const std::string& path() const { return path_; }
  // The page data's end as an offset: 4096 + its uncompressed size.
  uint64_t end() const { return kPageDataOffset + payload_size_; }
  // The codec named by the descriptor (kNone for a raw file).
  Codec codec() const { return compressed() ? descriptor_.codec : Codec::kNone; }
  uint64_t file_size() const { return file_size_; }

  // Reads [offset, offset + n) of the page data (offsets as in PageRun.offset:
  // from 4096 on) into `out`.
  Status Read(void* out, uint64_t n, uint64_t offset) const;

 private:
  UniqueFd fd_;
  std::string path_;
  uint64_t payload_size_ = 0;
  uint64_t file_size_ = 0;
  FrameDescriptor descriptor_{};
  std::vector<FrameEntry> frames_;
  // Names this opened file for the per-thread cache of the last frame read
  // (an address could be another file's once this one is gone).
  uint64_t id_ = 0;
};

}  // namespace cryo::image
