#include "image/format.h"

#include <xxhash.h>

#include <cstring>
#include <new>

namespace cryo::image {
namespace {
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace

const char* FileKindName(FileKind kind) {
  switch (kind) {
    case FileKind::kInventory: return "inventory";
    case FileKind::kProcessCore: return "process core";
    case FileKind::kMm: return "memory map";
    case FileKind::kFdTable: return "fd table";
    case FileKind::kPages: return "page data";
    case FileKind::kPipes: return "pipe table";
    case FileKind::kShm: return "shared memory table";
    case FileKind::kTtys: return "terminal table";
    case FileKind::kFiles: return "unlinked file table";
  }
  return "unknown";
}

void EncodeHeader(const FileHeader& h, uint8_t out[kHeaderSize]) {
  std::memcpy(out, kMagic, 4);
  Put32(out + 4, h.format_version);
  Put32(out + 8, static_cast<uint32_t>(h.kind));
  Put32(out + 12, h.header_size);
  Put64(out + 16, h.payload_size);
  Put64(out + 24, h.payload_hash);
}

bool DecodeHeader(const uint8_t* data, size_t n, FileHeader* h, std::string* why) {
  if (n < kHeaderSize) {
    *why = "file is shorter than the 32-byte header (truncated)";
    return false;
  }
  if (std::memcmp(data, kMagic, 4) != 0) {
    *why = "bad magic (not a cryo image file, or corrupted)";
    return false;
  }
  h->format_version = Get32(data + 4);
  h->kind = static_cast<FileKind>(Get32(data + 8));
  h->header_size = Get32(data + 12);
  h->payload_size = Get64(data + 16);
  h->payload_hash = Get64(data + 24);
  if (h->header_size < kHeaderSize) {
    *why = "header size " + std::to_string(h->header_size) + " is invalid";
    return false;
  }
  return true;
}

uint64_t HashBytes(const void* data, size_t n) { return XXH3_64bits(data, n); }

StreamHash::StreamHash() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  Reset();
}
StreamHash::~StreamHash() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void StreamHash::Reset() { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_)); }
void StreamHash::Update(const void* data, size_t n) { XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, n); }
uint64_t StreamHash::Digest() const { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_)); }

const std::vector<std::string>& SupportedFeatures() {
  // One name a line: branches adding features merge without conflicts.
  static const std::vector<std::string> kFeatures = {
      "x86_64",
      "xsave",
      "threads",
      "tree",
      "zombies",
      "pipes",
      "shared-files",
      "shmem",
      "fifos",
      "cow-shared",
      "shell-job",
      "eventfd",
      "timerfd",
      "signalfd",
      "epoll",
      "inotify",
      "posix-timers",
      "memfd",
      "posix-shm",
      "sysv-shm",
      "tty",
      "listen-sockets",
      "map-noreserve",
      "anon-shmem",
      "vma-attributes",
      "mm-attributes",
      "file-locks",
      "fd-owner",
      "shared-fd-table",
      "shared-fs",
      "stopped",
      "proc-attrs",
      "cgroups",
      "file-open-mode",
      "memfd-writers",
      "pty-owner",
      "socket-state",
      "unlinked-files",
  };
  return kFeatures;
}

}  // namespace cryo::image
