// The byte layout shared by every file of an image (docs/image-format.md).
//
// Every file starts with a little-endian header (48 bytes in format 2, 32 in 1):
//   0  char[4] magic        "CRYO"
//   4  u32     format_version
//   8  u32     kind          (FileKind)
//   12 u32     header_size   (48; readers skip to header_size for forward growth)
//   16 u64     payload_size  bytes that follow the header (pages: after the 4096-byte prefix)
//   24 u64     payload_hash  XXH3-64 of the payload (0 for page files: each page run
//                            carries its own hash in the mm record)
//   32 u8[16]  image_id      format 2: the image's random id, the same in every
//                            file of one image (and in Inventory.image_id)
// Metadata files carry one protobuf message as payload. Page files pad the header
// to 4096 bytes so that page data is page-aligned in the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cryo::image {

inline constexpr char kMagic[4] = {'C', 'R', 'Y', 'O'};
// Bumped when a reader of an older version could mis-read an image; new optional
// fields do not bump it. Readers accept every version up to their own.
// 2: the image id in every header, file sizes in the inventory.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kHeaderSizeV1 = 32;   // format 1: no image id
inline constexpr uint32_t kHeaderSize = 48;     // format 2
inline constexpr size_t kImageIdSize = 16;
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageDataOffset = 4096;

enum class FileKind : uint32_t {
  kInventory = 1,
  kProcessCore = 2,
  kMm = 3,
  kFdTable = 4,
  kPages = 5,
  kPipes = 6,
  kTtys = 12,
  kShm = 13,  // shm.img: ShmTable
  kFiles = 30,  // files.img: UnlinkedFileTable
  kNamespaces = 61,  // ns.img: NamespaceTable
  kSnapshot = 70,  // snapshot.img: SnapshotTable
  kCompressedPages = 86,  // pages-PID.img in compressed frames (page_frames.h)
};
const char* FileKindName(FileKind kind);

struct FileHeader {
  uint32_t format_version = kFormatVersion;
  FileKind kind = FileKind::kInventory;
  uint32_t header_size = kHeaderSize;
  uint64_t payload_size = 0;
  uint64_t payload_hash = 0;
  std::string image_id;  // kImageIdSize bytes from format 2 on, empty before
};

// Writes the header of `h.format_version` (48 bytes from format 2 on, 32
// before; h.header_size is set to it) into `out`, which holds kHeaderSize.
void EncodeHeader(FileHeader& h, uint8_t out[kHeaderSize]);
// Decodes without judging the version against the reader's; the caller checks
// it. A header of format 2 or later must be at least 48 bytes.
bool DecodeHeader(const uint8_t* data, size_t n, FileHeader* h, std::string* why);
// A new random image id (getrandom(2)).
std::string NewImageId();
// The id in hex, for messages ("-" for none).
std::string ImageIdHex(const std::string& id);

uint64_t HashBytes(const void* data, size_t n);

// HashBytes of bytes fed in parts: Digest() equals HashBytes of their concatenation.
class StreamHash {
 public:
  StreamHash();
  ~StreamHash();
  StreamHash(const StreamHash&) = delete;
  StreamHash& operator=(const StreamHash&) = delete;
  void Reset();
  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// Features this cryo can restore. An image listing any other feature is refused.
const std::vector<std::string>& SupportedFeatures();

// File names inside an image directory.
inline std::string InventoryName() { return "inventory.img"; }
inline std::string CoreName(int pid) { return "core-" + std::to_string(pid) + ".img"; }
inline std::string MmName(int pid) { return "mm-" + std::to_string(pid) + ".img"; }
inline std::string FdsName(int pid) { return "fds-" + std::to_string(pid) + ".img"; }
inline std::string PagesName(int pid) { return "pages-" + std::to_string(pid) + ".img"; }
inline std::string PipesName() { return "pipes.img"; }
inline std::string ShmName() { return "shm.img"; }
// The content of every shared memory object, in the page file layout (kind 5).
inline std::string ShmPagesName() { return "shm-pages.img"; }
inline std::string TtysName() { return "ttys.img"; }
inline std::string FilesName() { return "files.img"; }
inline std::string NamespacesName() { return "ns.img"; }
// The content of every unlinked regular file, in the page file layout (kind 5).
inline std::string FilesDataName() { return "files-data.img"; }
// Files carried by --snapshot-path: snapshot.img, their content in
// snapshot-data.img (page file layout, kind 5).
inline std::string SnapshotName() { return "snapshot.img"; }
inline std::string SnapshotDataName() { return "snapshot-data.img"; }
// Written first by a dump and removed last, once the inventory is durable:
// an image that still has it is one whose dump did not finish (cryo was
// killed), even if an inventory of an earlier dump were there.
inline std::string IncompleteMarkerName() { return "dump-incomplete"; }
// A name a file of an image can have: one of the names above, a PID in
// decimal without a leading zero (dump-incomplete excluded: it is no part of
// an image). A streamed image's receiver accepts no other name.
bool IsImageFileName(const std::string& name);
// The most bytes a file of that name may hold: kMaxInventoryBytes or
// kMaxRecordBytes (image_file.h) for a metadata file, far more for page data.
uint64_t MaxImageFileBytes(const std::string& name);
inline constexpr uint64_t kMaxDataFileBytes = 1ull << 40;
inline constexpr const char* kIncompleteImage = "incomplete image: the dump did not finish";

}  // namespace cryo::image
