#include "image/page_frames.h"

#include <lz4.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

namespace cryo::image {
namespace {

// Little-endian on disk, as every integer of an image; cryo is x86_64 only.
static_assert(std::endian::native == std::endian::little);
template <typename T>
void Put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

std::string Compression::ToString() const {
  switch (codec) {
    case Codec::kNone: return "none";
    case Codec::kZstd: return "zstd:" + std::to_string(level);
    case Codec::kLz4: return "lz4";
  }
  return "unknown";
}

Result<Compression> ParseCompression(const std::string& text, int default_zstd_level) {
  Compression c;
  if (text == "none") return c;
  if (text == "lz4") {
    c.codec = Codec::kLz4;
    return c;
  }
  if (text == "zstd") {
    c.codec = Codec::kZstd;
    c.level = default_zstd_level;
    return c;
  }
  if (text.rfind("zstd:", 0) == 0 && text.size() > 5 && text.size() <= 7 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos) {
    const int level = std::stoi(text.substr(5));
    if (level >= 1 && level <= 19) {
      c.codec = Codec::kZstd;
      c.level = level;
      return c;
    }
  }
  return Status::Error("--compress " + text + ": give zstd, zstd:LEVEL (1 to 19), lz4 or none");
}

void EncodeDescriptor(const FrameDescriptor& d, uint8_t out[kDescriptorSize]) {
  std::memset(out, 0, kDescriptorSize);
  std::memcpy(out, kFrameMagic, 4);
  Put<uint32_t>(out + 4, static_cast<uint32_t>(d.codec));
  Put<uint32_t>(out + 8, d.level);
  Put<uint32_t>(out + 12, d.chunk_bytes);
  Put<uint64_t>(out + 16, d.frame_count);
  Put<uint64_t>(out + 24, d.index_offset);
}

bool DecodeDescriptor(const uint8_t* p, FrameDescriptor* d, std::string* why) {
  if (std::memcmp(p, kFrameMagic, 4) != 0) {
    *why = "no frame descriptor (bad magic)";
    return false;
  }
  const uint32_t codec = Get<uint32_t>(p + 4);
  if (codec != static_cast<uint32_t>(Codec::kZstd) && codec != static_cast<uint32_t>(Codec::kLz4)) {
    *why = "unknown compression " + std::to_string(codec);
    return false;
  }
  d->codec = static_cast<Codec>(codec);
  d->level = Get<uint32_t>(p + 8);
  d->chunk_bytes = Get<uint32_t>(p + 12);
  d->frame_count = Get<uint64_t>(p + 16);
  d->index_offset = Get<uint64_t>(p + 24);
  if (d->chunk_bytes < kMinChunkBytes || d->chunk_bytes > kMaxChunkBytes || d->chunk_bytes % kPageSize) {
    *why = "chunk size " + std::to_string(d->chunk_bytes) + " is not a multiple of 4096 in 4 KiB..16 MiB";
    return false;
  }
  if (Get<uint32_t>(p + 32) != 0 || Get<uint32_t>(p + 36) != 0) {
    *why = "reserved descriptor bytes are not zero";
    return false;
  }
  return true;
}

void EncodeEntry(const FrameEntry& e, uint8_t out[kFrameEntrySize]) {
  Put<uint64_t>(out, e.file_offset);
  Put<uint32_t>(out + 8, e.stored_bytes);
  Put<uint16_t>(out + 12, static_cast<uint16_t>(e.method));
  Put<uint16_t>(out + 14, 0);
  Put<uint64_t>(out + 16, e.hash);
}

FrameEntry DecodeEntry(const uint8_t* p, uint16_t* reserved) {
  FrameEntry e;
  e.file_offset = Get<uint64_t>(p);
  e.stored_bytes = Get<uint32_t>(p + 8);
  e.method = static_cast<FrameMethod>(Get<uint16_t>(p + 12));
  *reserved = Get<uint16_t>(p + 14);
  e.hash = Get<uint64_t>(p + 16);
  return e;
}

uint64_t MaxStoredBytes(FrameMethod m, uint64_t n) {
  switch (m) {
    case FrameMethod::kStored: return n;
    case FrameMethod::kZstd: return ZSTD_compressBound(n);
    case FrameMethod::kLz4: return static_cast<uint64_t>(LZ4_compressBound(static_cast<int>(n)));
  }
  return 0;
}

bool CheckFrameIndex(const FrameDescriptor& d, uint64_t payload_size, uint64_t file_size, const std::string& index,
                     uint64_t index_hash, std::vector<FrameEntry>* entries, std::string* why) {
  const uint64_t want_frames = payload_size / d.chunk_bytes + (payload_size % d.chunk_bytes != 0);
  if (d.frame_count != want_frames) {
    *why = std::to_string(d.frame_count) + " frames for " + std::to_string(payload_size) + " bytes of page data in " +
           std::to_string(d.chunk_bytes) + "-byte chunks (expected " + std::to_string(want_frames) + ")";
    return false;
  }
  if (d.index_offset < kPageDataOffset || d.index_offset > file_size ||
      (file_size - d.index_offset) / kFrameEntrySize != d.frame_count ||
      (file_size - d.index_offset) % kFrameEntrySize != 0 || index.size() != file_size - d.index_offset) {
    *why = "the frame index at " + std::to_string(d.index_offset) + " does not end the file";
    return false;
  }
  if (HashBytes(index.data(), index.size()) != index_hash) {
    *why = "checksum mismatch in the frame index";
    return false;
  }
  entries->clear();
  entries->reserve(d.frame_count);
  uint64_t at = kPageDataOffset;
  for (uint64_t i = 0; i < d.frame_count; ++i) {
    uint16_t reserved = 0;
    FrameEntry e = DecodeEntry(reinterpret_cast<const uint8_t*>(index.data()) + i * kFrameEntrySize, &reserved);
    const uint64_t n = std::min<uint64_t>(d.chunk_bytes, payload_size - i * d.chunk_bytes);
    const bool known = e.method == FrameMethod::kStored || e.method == FrameMethod::kZstd ||
                       e.method == FrameMethod::kLz4;
    if (!known || reserved != 0 || e.file_offset != at || e.stored_bytes == 0 ||
        e.stored_bytes > MaxStoredBytes(e.method, n) || (e.method == FrameMethod::kStored && e.stored_bytes != n)) {
      *why = "frame " + std::to_string(i) + " of the frame index is invalid";
      return false;
    }
    at += e.stored_bytes;
    entries->push_back(e);
  }
  if (at != d.index_offset) {
    *why = "the frames end at " + std::to_string(at) + ", the frame index starts at " + std::to_string(d.index_offset);
    return false;
  }
  return true;
}

FrameMethod CompressChunk(const Compression& c, const void* data, size_t n, std::string* out) {
  if (c.codec == Codec::kZstd) {
    thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    out->resize(ZSTD_compressBound(n));
    const size_t got = cctx ? ZSTD_compressCCtx(cctx.get(), out->data(), out->size(), data, n, c.level) : 0;
    if (cctx && !ZSTD_isError(got) && got < n) {
      out->resize(got);
      return FrameMethod::kZstd;
    }
  } else if (c.codec == Codec::kLz4) {
    out->resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(n))));
    const int got = LZ4_compress_default(static_cast<const char*>(data), out->data(), static_cast<int>(n),
                                         static_cast<int>(out->size()));
    if (got > 0 && static_cast<size_t>(got) < n) {
      out->resize(static_cast<size_t>(got));
      return FrameMethod::kLz4;
    }
  }
  out->assign(static_cast<const char*>(data), n);
  return FrameMethod::kStored;
}

bool DecompressFrame(FrameMethod m, const void* data, size_t stored, void* out, size_t n, std::string* why) {
  switch (m) {
    case FrameMethod::kStored:
      if (stored != n) break;
      std::memcpy(out, data, n);
      return true;
    case FrameMethod::kZstd: {
      // Into a buffer of exactly n bytes: a frame that would inflate beyond it fails.
      thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
      if (!dctx) {
        *why = "cannot allocate a zstd decompression context";
        return false;
      }
      const size_t got = ZSTD_decompressDCtx(dctx.get(), out, n, data, stored);
      if (ZSTD_isError(got)) {
        *why = std::string("zstd: ") + ZSTD_getErrorName(got);
        return false;
      }
      if (got == n) return true;
      *why = "decompressed to " + std::to_string(got) + " bytes, not " + std::to_string(n);
      return false;
    }
    case FrameMethod::kLz4: {
      const int got = LZ4_decompress_safe(static_cast<const char*>(data), static_cast<char*>(out),
                                          static_cast<int>(stored), static_cast<int>(n));
      if (got == static_cast<int>(n)) return true;
      *why = got < 0 ? "lz4: malformed frame" : "decompressed to " + std::to_string(got) + " bytes, not " +
                                                     std::to_string(n);
      return false;
    }
  }
  *why = "stored frame of " + std::to_string(stored) + " bytes for " + std::to_string(n);
  return false;
}

}  // namespace cryo::image
