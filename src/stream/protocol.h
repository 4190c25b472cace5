// The stream protocol of `cryo dump --to` and `cryo page-server`
// (docs/stream-protocol.md): frames over one TCP connection, little-endian.
//
//   frame   = header (16 bytes) + payload (header.length bytes)
//   header  = u32 type, u32 file_id, u32 length, u32 reserved (0)
//
// The sender says HELLO, the receiver answers HELLO (or ERROR); then the
// sender sends the image's files (OPEN name, DATA offset+bytes, CLOSE size),
// the inventory last, and END; the receiver answers ACK once the image is
// durable under its final name, or ERROR. ABORT: the sender gave up.
// Everything here is pure (no I/O): the receiver's checks are fuzzed
// (tests/fuzz/stream_fuzzer.cc).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "base/status.h"

namespace cryo::stream {

inline constexpr char kHelloMagic[8] = {'C', 'R', 'Y', 'O', 'S', 'T', 'R', 'M'};
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 16;
// The most data one DATA frame carries, and the most payload any frame has.
inline constexpr uint32_t kMaxChunk = 1u << 20;
inline constexpr uint32_t kMaxPayload = kMaxChunk + 8;
// Receiver limits: files open at once, files in an image.
inline constexpr size_t kMaxOpenFiles = 256;
inline constexpr size_t kMaxFiles = 1u << 20;

enum class FrameType : uint32_t {
  kHello = 1,  // payload: magic[8], u32 protocol version, u32 image format version, cryo version (text)
  kOpen = 2,   // file_id: new, nonzero; payload: the file's name
  kData = 3,   // file_id: open; payload: u64 offset, then the bytes (1..kMaxChunk)
  kClose = 4,  // file_id: open; payload: u64 the file's size
  kEnd = 5,    // the image is complete; empty payload
  kAbort = 6,  // sender -> receiver: the dump failed; payload: why (text)
  kAck = 7,    // receiver -> sender: the image is durable; payload: its directory (text)
  kError = 8,  // receiver -> sender: refused; payload: why (text)
  // `cryo migrate` to `cryo page-server --restore`:
  kMigrate = 9,    // sender, first after HELLO: after the ACK it kills its tree and says KILLED; empty
  kKilled = 10,    // sender, after the ACK: the source tree is gone, restore it; empty
  kRestored = 11,  // receiver, after KILLED: restored; payload: the root's pid (text)
  // file_id: open; payload: u64 offset, u32 n (1..kMaxChunk), then n bytes as one zstd frame
  kDataZstd = 12,
  // sender, before each pre-copy round's image (`--pre-copy`): payload: the
  // round's number, decimal text (0, 1, ... in order); that image goes into
  // pre-copy/N of the image directory and is acknowledged (ACK) as any.
  kRound = 13,
  // Post-copy migration (`cryo migrate --lazy`, docs/stream-protocol.md):
  kPostCopy = 14,  // sender, first after HELLO instead of MIGRATE; empty
  kReady = 15,     // receiver: the tree is restored, not yet released; empty
  kGo = 16,        // sender: committed, the original never resumes; empty
  kPageReq = 17,   // receiver: u32 pid, u32 0, u64 vaddr, u64 length (pages, at most kMaxPageReq)
  kPages = 18,     // sender: u64 vaddr, then 1..kMaxChunk bytes of the pages there
  kAllIn = 19,     // receiver: every page is in; empty
  // (feature "remote-vmas") receiver, before any PAGE_REQ: which pages of a
  // VMA the dump did not plan exist: u32 pid, u32 0, u64 start, u64 end
  kMapReq = 20,
  // sender, the answer to a MAP_REQ (in order): u32 more (1: another MAP of
  // the same answer follows), u32 0, then (u64 vaddr, u64 bytes) ascending
  kMap = 21,
};
// The most (vaddr, bytes) pairs one MAP holds.
inline constexpr size_t kMaxMapPairs = (kMaxChunk - 8) / 16;
// The most one PAGE_REQ asks for (a page run of the image is at most 4 MiB).
inline constexpr uint64_t kMaxPageReq = 4ull << 20;
const char* FrameTypeName(uint32_t type);

struct FrameHeader {
  uint32_t type = 0;
  uint32_t file_id = 0;
  uint32_t length = 0;
};

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderSize]);
// Decodes and checks what needs no state: a known type, length within
// kMaxPayload, reserved 0.
Status DecodeFrameHeader(const uint8_t in[kFrameHeaderSize], FrameHeader* h);
// A whole frame as bytes.
std::string EncodeFrame(FrameType type, uint32_t file_id, std::string_view payload);
std::string HelloPayload(uint32_t format_version);
// Checks a HELLO payload: magic, the protocol version, an image format this
// cryo reads (at most `max_format`).
Status CheckHello(std::string_view payload, uint32_t max_format);
uint64_t GetU64(std::string_view p);
void PutU64(std::string* out, uint64_t v);
void PutU32(std::string* out, uint32_t v);

// Where the receiver puts what it accepts.
class FileSink {
 public:
  virtual ~FileSink() = default;
  virtual Status Create(uint32_t file_id, const std::string& name) = 0;
  virtual Status Write(uint32_t file_id, uint64_t offset, std::string_view data) = 0;
  virtual Status Finish(uint32_t file_id, uint64_t size) = 0;
};

// The receiver's checks of the file frames, in order: every name one an
// image can have (image::IsImageFileName: no path, no "..") and given once,
// the inventory last, every write within the bounds of its file's kind, a
// size at CLOSE that is what was written, END only with every file closed and
// the inventory among them. The first refusal ends the stream.
class ImageReceiver {
 public:
  explicit ImageReceiver(FileSink* sink) : sink_(sink) {}
  // One frame after the handshake (OPEN, DATA, CLOSE, END or ABORT).
  Status OnFrame(const FrameHeader& h, std::string_view payload);
  bool ended() const { return ended_; }
  uint64_t bytes() const { return bytes_; }
  size_t files() const { return names_.size(); }

 private:
  struct OpenFile {
    std::string name;
    uint64_t max_bytes = 0;
    uint64_t end = 0;  // the highest offset written + 1
  };
  Status OnOpen(uint32_t id, std::string_view payload);
  Status OnData(uint32_t id, std::string_view payload);
  Status OnDataZstd(uint32_t id, std::string_view payload);
  Status WriteData(uint32_t id, uint64_t offset, std::string_view data);
  std::string inflated_;  // a DATA_ZSTD frame's bytes
  Status OnClose(uint32_t id, std::string_view payload);
  FileSink* sink_;
  std::map<uint32_t, OpenFile> open_;
  std::set<std::string> names_;
  std::set<uint32_t> used_ids_;
  bool inventory_opened_ = false, inventory_closed_ = false, ended_ = false;
  uint64_t bytes_ = 0;
};

}  // namespace cryo::stream
