// Compressed page files (feature "compressed-pages", docs/image-format.md
// section 2, "Compressed page files"): the page data of pages-PID.img cut
// into fixed chunks of the uncompressed data, each compressed on its own as an
// independent frame, so that any page can be read back by its offset in the
// uncompressed data (a restore fills runs in parallel, an incremental image
// reads its parent's pages by offset) by decompressing only the frames that
// hold it.
//
//   [0, 48)          the file header: kind kCompressedPages, payload_size the
//                    bytes of uncompressed page data, payload_hash XXH3-64 of
//                    the frame index
//   [48, 88)         the frame descriptor (FrameDescriptor)
//   [88, 4096)       zero
//   [4096, index)    the frames, back to back, in chunk order
//   [index, end)     the frame index: one 24-byte FrameEntry per chunk
//
// Offsets in the image's records (PageRun.offset) stay offsets in the
// uncompressed data (4096 + ...), as in an uncompressed page file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/format.h"

namespace cryo::image {

enum class Codec : uint32_t { kNone = 0, kZstd = 1, kLz4 = 2 };

// `--compress zstd[:LEVEL]|lz4|none`.
struct Compression {
  Codec codec = Codec::kNone;
  int level = 0;  // zstd: 1 to 19
  bool on() const { return codec != Codec::kNone; }
  std::string ToString() const;  // "zstd:3", "lz4", "none"
};
// Parses the option's text ("zstd" is level `default_zstd_level`).
Result<Compression> ParseCompression(const std::string& text, int default_zstd_level = 1);

inline constexpr char kFrameMagic[4] = {'C', 'F', 'R', 'M'};
inline constexpr uint32_t kDescriptorOffset = kHeaderSize;  // right after the header
inline constexpr uint32_t kDescriptorSize = 40;
inline constexpr uint32_t kFrameEntrySize = 24;
// The uncompressed bytes of one frame (the last one may hold fewer).
inline constexpr uint32_t kDefaultChunkBytes = 256 << 10;
inline constexpr uint32_t kMinChunkBytes = 4096;
inline constexpr uint32_t kMaxChunkBytes = 16 << 20;

// How a frame's bytes are stored.
enum class FrameMethod : uint16_t { kStored = 0, kZstd = 1, kLz4 = 2 };

struct FrameDescriptor {
  Codec codec = Codec::kZstd;  // what the dump asked for (a frame may be stored)
  uint32_t level = 0;
  uint32_t chunk_bytes = kDefaultChunkBytes;
  uint64_t frame_count = 0;
  uint64_t index_offset = 0;  // where the frame index starts in the file
};
// 40 bytes: "CFRM", u32 codec, u32 level, u32 chunk_bytes, u64 frame_count,
// u64 index_offset, u32 reserved (0).
void EncodeDescriptor(const FrameDescriptor& d, uint8_t out[kDescriptorSize]);
bool DecodeDescriptor(const uint8_t* p, FrameDescriptor* d, std::string* why);

struct FrameEntry {
  uint64_t file_offset = 0;
  uint32_t stored_bytes = 0;
  FrameMethod method = FrameMethod::kStored;
  uint64_t hash = 0;  // XXH3-64 of the stored bytes
};
// 24 bytes: u64 file_offset, u32 stored_bytes, u16 method, u16 reserved (0), u64 hash.
void EncodeEntry(const FrameEntry& e, uint8_t out[kFrameEntrySize]);
FrameEntry DecodeEntry(const uint8_t* p, uint16_t* reserved);

// The frame index of a file of `file_size` bytes whose header says
// `payload_size` bytes of page data: every entry checked (frames back to back
// from 4096 to the index, each within the bound of its method, the index's
// hash). `why` says what is wrong.
bool CheckFrameIndex(const FrameDescriptor& d, uint64_t payload_size, uint64_t file_size, const std::string& index,
                     uint64_t index_hash, std::vector<FrameEntry>* entries, std::string* why);

// Compresses one chunk: the method used (kStored when compressing saves
// nothing) and the bytes to store.
FrameMethod CompressChunk(const Compression& c, const void* data, size_t n, std::string* out);
// Decompresses a frame into exactly `n` bytes at `out`; false (with `why`) if
// it is not a valid frame of that many bytes.
bool DecompressFrame(FrameMethod m, const void* data, size_t stored, void* out, size_t n, std::string* why);
// The most bytes a frame of an `n`-byte chunk may take.
uint64_t MaxStoredBytes(FrameMethod m, uint64_t n);

}  // namespace cryo::image
