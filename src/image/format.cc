#include "image/format.h"
#include "image/image_file.h"

#include <xxhash.h>

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
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
    case FileKind::kNamespaces: return "namespace table";
    case FileKind::kFiles: return "unlinked file table";
    case FileKind::kSnapshot: return "snapshot file table";
    case FileKind::kCompressedPages: return "compressed page data";
  }
  return "unknown";
}

void EncodeHeader(FileHeader& h, uint8_t out[kHeaderSize]) {
  const bool with_id = h.format_version >= 2;
  h.header_size = with_id ? kHeaderSize : kHeaderSizeV1;
  std::memset(out, 0, kHeaderSize);
  std::memcpy(out, kMagic, 4);
  Put32(out + 4, h.format_version);
  Put32(out + 8, static_cast<uint32_t>(h.kind));
  Put32(out + 12, h.header_size);
  Put64(out + 16, h.payload_size);
  Put64(out + 24, h.payload_hash);
  if (with_id) std::memcpy(out + 32, h.image_id.data(), std::min(h.image_id.size(), kImageIdSize));
}

bool DecodeHeader(const uint8_t* data, size_t n, FileHeader* h, std::string* why) {
  if (n < kHeaderSizeV1) {
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
  h->image_id.clear();
  if (h->header_size < kHeaderSizeV1) {
    *why = "header size " + std::to_string(h->header_size) + " is invalid";
    return false;
  }
  if (h->format_version >= 2) {
    if (h->header_size < kHeaderSize || n < kHeaderSize) {
      *why = "header of format " + std::to_string(h->format_version) + " is shorter than 48 bytes (truncated or corrupted)";
      return false;
    }
    h->image_id.assign(reinterpret_cast<const char*>(data + 32), kImageIdSize);
  }
  return true;
}

std::string NewImageId() {
  std::string id(kImageIdSize, '\0');
  size_t got = 0;
  while (got < id.size()) {
    const ssize_t n = ::getrandom(&id[got], id.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    else if (n < 0 && errno != EINTR) break;
  }
  if (got < id.size()) {  // no getrandom: time and pid still tell images apart
    const uint64_t t = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    const uint64_t p = static_cast<uint64_t>(::getpid());
    std::memcpy(&id[0], &t, 8);
    std::memcpy(&id[8], &p, 8);
  }
  // An all-zero id would read as "no id": never hand one out.
  if (id == std::string(kImageIdSize, '\0')) id[0] = 1;
  return id;
}

std::string ImageIdHex(const std::string& id) {
  if (id.empty()) return "-";
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : id) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
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
      "unix-sockets",
      "unlinked-files",
      "unix-pending-connections",
      "unix-external-peers",
      "outside-tty",
      "unix-scm-rights",
      "tcp-established",
      "tcp-half-closed",
      "udp-sockets",
      "netlink-sockets",
      "seccomp",
      "opath-symlink",
      "uts-ns",
      "ipc-ns",
      "net-ns",
      "net-veth",
      "pid-ns",
      "mount-ns",
      "mount-ns-absent",
      "mount-devpts",
      "mqueue-fds",
      "incremental",
      "snapshot-files",
      "pidfds",
      "compressed-pages",
      "guard-regions",
      "hugetlb",
      "time-ns",
      "remote-pages",
      "fs-root",
      "hugetlb-shared",
      "user-ns",
      "cgroup-ns",
      "cgroup-settings",
      "hugetlbfs-file",
      "cgroup-more-settings",
      "hugetlb-private-file",
      "remote-vmas",
      "snapshot-hardlinks",
      "live-copied-pages",
      "aio-context",
  };
  return kFeatures;
}

}  // namespace cryo::image

namespace cryo::image {
namespace {

// "PREFIX-PID.img" with PID a decimal number a pid can have.
bool IsPidFileName(const std::string& name, const std::string& prefix) {
  if (name.size() < prefix.size() + 5 || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - 4, 4, ".img") != 0)
    return false;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
  if (digits.empty() || digits.size() > 7 || digits[0] == '0') return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

bool IsImageFileName(const std::string& name) {
  // One name a line: branches adding files merge without conflicts.
  static const char* const kNames[] = {
      "inventory.img", "pipes.img", "shm.img", "shm-pages.img", "ttys.img", "files.img", "files-data.img",
      "ns.img",
      "snapshot.img", "snapshot-data.img",
  };
  for (const char* n : kNames)
    if (name == n) return true;
  for (const char* prefix : {"core-", "mm-", "fds-", "pages-"})
    if (IsPidFileName(name, prefix)) return true;
  return false;
}

uint64_t MaxImageFileBytes(const std::string& name) {
  if (name == InventoryName()) return kMaxInventoryBytes;
  if (name == ShmPagesName() || name == FilesDataName() || name == SnapshotDataName() || IsPidFileName(name, "pages-")) return kMaxDataFileBytes;
  return kMaxRecordBytes;
}

}  // namespace cryo::image
