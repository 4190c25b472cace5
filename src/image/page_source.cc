#include "image/page_source.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace cryo::image {
namespace {

Status PreadAll(int fd, void* out, uint64_t n, uint64_t offset, const std::string& path) {
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, static_cast<char*>(out) + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno("reading " + path);
    if (r == 0) return Status::Error(path + ": ends before offset " + std::to_string(offset + n) + " (truncated)");
    done += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

}  // namespace

Result<PageSource> PageSource::Open(const std::string& dir, const ImageIdentity& identity, const std::string& name,
                                    bool compressed_ok, FileHeader* h) {
  static std::atomic<uint64_t> next_id{1};
  PageSource s;
  s.id_ = next_id++;
  s.path_ = dir + "/" + name;
  CRYO_ASSIGN_OR_RETURN(s.fd_, OpenImageFile(s.path_, &s.file_size_));
  CRYO_RETURN_IF_ERROR(identity.CheckSize(s.path_, name, s.file_size_, true));
  uint8_t prefix[kDescriptorOffset + kDescriptorSize] = {};
  const uint64_t got = std::min<uint64_t>(sizeof(prefix), s.file_size_);
  CRYO_RETURN_IF_ERROR(PreadAll(s.fd_.get(), prefix, got, 0, s.path_));
  std::string why;
  if (!DecodeHeader(prefix, got, h, &why)) return Status::Error(s.path_ + ": " + why);
  const bool framed = h->kind == FileKind::kCompressedPages;
  CRYO_RETURN_IF_ERROR(CheckFileHeader(s.path_, prefix, got, framed ? FileKind::kCompressedPages : FileKind::kPages, h));
  CRYO_RETURN_IF_ERROR(identity.CheckHeader(s.path_, name, *h));
  s.payload_size_ = h->payload_size;
  if (!framed) {
    if (s.file_size_ < kPageDataOffset || h->payload_size != s.file_size_ - kPageDataOffset)
      return Status::Error(s.path_ + ": holds " + std::to_string(s.file_size_) + " bytes, its header says " +
                           std::to_string(h->payload_size) + " bytes of page data (truncated or corrupted)");
    return s;
  }
  if (!compressed_ok)
    return Status::Error(s.path_ + ": compressed page data in an image without the feature 'compressed-pages' "
                         "(corrupted)");
  if (h->header_size != kHeaderSize)
    return Status::Error(s.path_ + ": compressed page data with a " + std::to_string(h->header_size) +
                         "-byte header (corrupted)");
  if (got < sizeof(prefix) || !DecodeDescriptor(prefix + kDescriptorOffset, &s.descriptor_, &why))
    return Status::Error(s.path_ + ": compressed page data: " + (why.empty() ? "truncated" : why) + " (corrupted)");
  if (h->payload_size > kMaxDataFileBytes)
    return Status::Error(s.path_ + ": " + std::to_string(h->payload_size) + " bytes of page data is impossible (corrupted)");
  std::string index;
  if (s.descriptor_.index_offset <= s.file_size_ && s.descriptor_.index_offset >= kPageDataOffset) {
    index.resize(s.file_size_ - s.descriptor_.index_offset);
    CRYO_RETURN_IF_ERROR(PreadAll(s.fd_.get(), index.data(), index.size(), s.descriptor_.index_offset, s.path_));
  }
  if (!CheckFrameIndex(s.descriptor_, h->payload_size, s.file_size_, index, h->payload_hash, &s.frames_, &why))
    return Status::Error(s.path_ + ": compressed page data: " + why + " (corrupted)");
  return s;
}

Status PageSource::Read(void* out, uint64_t n, uint64_t offset) const {
  if (offset < kPageDataOffset || offset > end() || n > end() - offset)
    return Status::Error(path_ + ": page data [" + std::to_string(offset) + ", +" + std::to_string(n) +
                         ") lies outside the file's (corrupted)");
  if (!compressed()) return PreadAll(fd_.get(), out, n, offset, path_);
  const uint64_t chunk = descriptor_.chunk_bytes;
  const uint64_t from = offset - kPageDataOffset;
  thread_local std::string stored;
  // The last frame this thread decompressed for a part of its chunk.
  thread_local struct {
    uint64_t source = 0, frame = 0;
    std::string data;
  } last;
  char* dst = static_cast<char*>(out);
  for (uint64_t pos = from; pos < from + n;) {
    const uint64_t i = pos / chunk;
    const FrameEntry& e = frames_[i];
    const uint64_t chunk_start = i * chunk;
    const uint64_t chunk_len = std::min(chunk, payload_size_ - chunk_start);
    const uint64_t take = std::min(from + n, chunk_start + chunk_len) - pos;
    const auto frame = [&] {
      return path_ + ": frame " + std::to_string(i) + " (page data offsets " +
             std::to_string(kPageDataOffset + chunk_start) + "-" +
             std::to_string(kPageDataOffset + chunk_start + chunk_len) + ")";
    };
    // The whole chunk wanted: straight into place; else through the cache.
    const bool direct = pos == chunk_start && take == chunk_len;
    if (direct || last.source != id_ || last.frame != i) {
      stored.resize(e.stored_bytes);
      CRYO_RETURN_IF_ERROR(PreadAll(fd_.get(), stored.data(), e.stored_bytes, e.file_offset, path_));
      if (HashBytes(stored.data(), stored.size()) != e.hash)
        return Status::Error(frame() + ": checksum mismatch (corrupted image)");
      if (!direct) {
        last.source = 0;  // until the frame is whole
        last.data.resize(chunk_len);
      }
      char* into = direct ? dst : last.data.data();
      std::string why;
      if (!DecompressFrame(e.method, stored.data(), stored.size(), into, chunk_len, &why))
        return Status::Error(frame() + ": does not decompress: " + why + " (corrupted image)");
      if (!direct) {
        last.source = id_;
        last.frame = i;
      }
    }
    if (!direct) std::memcpy(dst, last.data.data() + (pos - chunk_start), take);
    dst += take;
    pos += take;
  }
  return Status::Ok();
}

}  // namespace cryo::image
