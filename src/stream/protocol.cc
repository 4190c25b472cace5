#include "stream/protocol.h"

#include <zstd.h>

#include <cstring>

#include "image/format.h"

namespace cryo::stream {
namespace {

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

// A name from the wire, printable for a message.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

const char* FrameTypeName(uint32_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kOpen: return "OPEN";
    case FrameType::kData: return "DATA";
    case FrameType::kClose: return "CLOSE";
    case FrameType::kEnd: return "END";
    case FrameType::kAbort: return "ABORT";
    case FrameType::kAck: return "ACK";
    case FrameType::kError: return "ERROR";
    case FrameType::kMigrate: return "MIGRATE";
    case FrameType::kKilled: return "KILLED";
    case FrameType::kRestored: return "RESTORED";
    case FrameType::kDataZstd: return "DATA_ZSTD";
    case FrameType::kRound: return "ROUND";
    case FrameType::kPostCopy: return "POSTCOPY";
    case FrameType::kReady: return "READY";
    case FrameType::kGo: return "GO";
    case FrameType::kPageReq: return "PAGE_REQ";
    case FrameType::kPages: return "PAGES";
    case FrameType::kAllIn: return "ALL_IN";
    case FrameType::kMapReq: return "MAP_REQ";
    case FrameType::kMap: return "MAP";
  }
  return "unknown";
}

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderSize]) {
  PutU32(out, h.type);
  PutU32(out + 4, h.file_id);
  PutU32(out + 8, h.length);
  PutU32(out + 12, 0);
}

Status DecodeFrameHeader(const uint8_t in[kFrameHeaderSize], FrameHeader* h) {
  h->type = GetU32(in);
  h->file_id = GetU32(in + 4);
  h->length = GetU32(in + 8);
  // A TLS record header (handshake, version 3.x) where a frame should be.
  if (in[0] == 0x16 && in[1] == 0x03)
    return Status::Error("unknown frame type " + std::to_string(h->type) + ": a TLS handshake, not a cryo frame: the "
                         "peer uses TLS; give this side the same --tls-* options");
  if (h->type < static_cast<uint32_t>(FrameType::kHello) || h->type > static_cast<uint32_t>(FrameType::kMap))
    return Status::Error("unknown frame type " + std::to_string(h->type) + " (not a cryo stream, or corrupted)");
  if (h->length > kMaxPayload)
    return Status::Error(std::string(FrameTypeName(h->type)) + " frame of " + std::to_string(h->length) +
                         " bytes, more than the " + std::to_string(kMaxPayload) + " a frame may have");
  if (GetU32(in + 12) != 0) return Status::Error("frame header with a nonzero reserved field (corrupted)");
  return Status::Ok();
}

std::string EncodeFrame(FrameType type, uint32_t file_id, std::string_view payload) {
  std::string out(kFrameHeaderSize, '\0');
  EncodeFrameHeader({static_cast<uint32_t>(type), file_id, static_cast<uint32_t>(payload.size())},
                    reinterpret_cast<uint8_t*>(out.data()));
  out.append(payload);
  return out;
}

uint64_t GetU64(std::string_view p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

std::string HelloPayload(uint32_t format_version) {
  std::string p(kHelloMagic, sizeof(kHelloMagic));
  uint8_t v[8];
  PutU32(v, kProtocolVersion);
  PutU32(v + 4, format_version);
  p.append(reinterpret_cast<const char*>(v), sizeof(v));
  p += CRYO_VERSION;
  return p;
}

Status CheckHello(std::string_view payload, uint32_t max_format) {
  if (payload.size() < 16 || std::memcmp(payload.data(), kHelloMagic, sizeof(kHelloMagic)) != 0)
    return Status::Error("the peer does not speak cryo's stream protocol (no HELLO)");
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  const uint32_t version = GetU32(p + 8), format = GetU32(p + 12);
  const std::string who = "cryo " + Printable(payload.substr(16));
  if (version != kProtocolVersion)
    return Status::Error("the peer (" + who + ") speaks stream protocol version " + std::to_string(version) +
                         ", this cryo " + std::to_string(kProtocolVersion) + ": use the same cryo on both sides");
  if (format == 0 || format > max_format)
    return Status::Error("the peer (" + who + ") writes image format " + std::to_string(format) +
                         ", this cryo reads up to " + std::to_string(max_format) + ": use the same cryo on both sides");
  return Status::Ok();
}

Status ImageReceiver::OnFrame(const FrameHeader& h, std::string_view payload) {
  if (ended_) return Status::Error("a frame after END");
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kOpen: return OnOpen(h.file_id, payload);
    case FrameType::kData: return OnData(h.file_id, payload);
    case FrameType::kDataZstd: return OnDataZstd(h.file_id, payload);
    case FrameType::kClose: return OnClose(h.file_id, payload);
    case FrameType::kEnd:
      if (!payload.empty()) return Status::Error("END with a payload");
      if (!open_.empty())
        return Status::Error("END while " + open_.begin()->second.name + " is still open (truncated image)");
      if (!inventory_closed_) return Status::Error("END without " + image::InventoryName() + " (truncated image)");
      ended_ = true;
      return Status::Ok();
    case FrameType::kAbort:
      return Status::Error("the sender gave up: " + Printable(payload));
    case FrameType::kMigrate:
      return Status::Error("the sender migrates its tree (cryo migrate): this page server only receives an image; "
                           "run cryo page-server with --restore");
    default:
      return Status::Error(std::string(FrameTypeName(h.type)) + " frame in the middle of an image");
  }
}

Status ImageReceiver::OnOpen(uint32_t id, std::string_view payload) {
  const std::string name(payload);
  if (!image::IsImageFileName(name))
    return Status::Error("refused file name \"" + Printable(payload) + "\": not a file an image can have");
  if (id == 0 || !used_ids_.insert(id).second)
    return Status::Error("OPEN of " + name + " with file id " + std::to_string(id) + ", zero or used before");
  if (inventory_opened_) return Status::Error("OPEN of " + name + " after " + image::InventoryName() + " (it comes last)");
  if (open_.size() >= kMaxOpenFiles) return Status::Error("more than " + std::to_string(kMaxOpenFiles) + " files open at once");
  if (names_.size() >= kMaxFiles) return Status::Error("more than " + std::to_string(kMaxFiles) + " files");
  if (!names_.insert(name).second) return Status::Error(name + " sent twice");
  if (name == image::InventoryName()) inventory_opened_ = true;
  open_[id] = {name, image::MaxImageFileBytes(name), 0};
  return sink_->Create(id, name);
}

Status ImageReceiver::OnData(uint32_t id, std::string_view payload) {
  if (payload.size() <= 8 || payload.size() - 8 > kMaxChunk)
    return Status::Error("DATA for file id " + std::to_string(id) + " of " + std::to_string(payload.size()) + " bytes");
  return WriteData(id, GetU64(payload), payload.substr(8));
}

// The bytes' length comes first, so the output is bounded before anything is
// decompressed: a frame that inflates to more (or less) is refused.
Status ImageReceiver::OnDataZstd(uint32_t id, std::string_view payload) {
  if (payload.size() <= 12) return Status::Error("DATA_ZSTD for file id " + std::to_string(id) + " too short");
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  const uint32_t n = GetU32(p + 8);
  if (n == 0 || n > kMaxChunk)
    return Status::Error("DATA_ZSTD for file id " + std::to_string(id) + " of " + std::to_string(n) + " bytes");
  inflated_.resize(n);
  const size_t got = ZSTD_decompress(inflated_.data(), n, payload.data() + 12, payload.size() - 12);
  if (ZSTD_isError(got)) return Status::Error(std::string("DATA_ZSTD that does not decompress: ") + ZSTD_getErrorName(got));
  if (got != n)
    return Status::Error("DATA_ZSTD of " + std::to_string(n) + " bytes decompressed to " + std::to_string(got));
  return WriteData(id, GetU64(payload), inflated_);
}

Status ImageReceiver::WriteData(uint32_t id, uint64_t offset, std::string_view data) {
  auto it = open_.find(id);
  if (it == open_.end()) return Status::Error("DATA for file id " + std::to_string(id) + ", which is not open");
  const uint64_t n = data.size();
  if (offset > it->second.max_bytes || n > it->second.max_bytes - offset)
    return Status::Error("DATA beyond what " + it->second.name + " may hold (" +
                         std::to_string(it->second.max_bytes) + " bytes)");
  it->second.end = std::max(it->second.end, offset + n);
  bytes_ += n;
  return sink_->Write(id, offset, data);
}

Status ImageReceiver::OnClose(uint32_t id, std::string_view payload) {
  auto it = open_.find(id);
  if (it == open_.end()) return Status::Error("CLOSE of file id " + std::to_string(id) + ", which is not open");
  if (payload.size() != 8) return Status::Error("CLOSE of " + it->second.name + " without its size");
  const uint64_t size = GetU64(payload);
  if (size != it->second.end)
    return Status::Error(it->second.name + ": the sender says " + std::to_string(size) + " bytes, " +
                         std::to_string(it->second.end) + " arrived (truncated)");
  if (it->second.name == image::InventoryName()) inventory_closed_ = true;
  open_.erase(it);
  return sink_->Finish(id, size);
}

}  // namespace cryo::stream
