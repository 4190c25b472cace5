// The fuzzer's input: an image directory as one byte string, and back.
//
//   byte 0     mode: 0 = the files as they are (headers, checksums and all
//              are the input's); 1 = record payloads only: the harness writes
//              each file's header (format 2, a fixed image id, the payload's
//              checksum), the inventory's image id and file sizes, and page
//              files of the size their records give when their data is empty,
//              so that mutations reach the records' fields and their checks
//   then       files: u8 name length, name ([A-Za-z0-9._-], at most 64 bytes),
//              u32 LE data length, data
// Page files are never stored whole: their content does not matter to the
// reader before the restore.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "image/format.h"
#include "image/image_dir.h"

namespace cryo::image::fuzz {

struct InputFile {
  std::string name;
  std::string data;
};

inline bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

inline bool IsPageFile(const std::string& n) { return n.rfind("pages-", 0) == 0 || n == ShmPagesName(); }

inline FileKind KindOfName(const std::string& n) {
  if (n == InventoryName()) return FileKind::kInventory;
  if (n.rfind("mm-", 0) == 0) return FileKind::kMm;
  if (n.rfind("fds-", 0) == 0) return FileKind::kFdTable;
  if (n == PipesName()) return FileKind::kPipes;
  if (n == ShmName()) return FileKind::kShm;
  if (n == TtysName()) return FileKind::kTtys;
  if (IsPageFile(n)) return FileKind::kPages;
  return FileKind::kProcessCore;
}

// Mode in files[0].name == "" with data = the mode byte.
inline std::vector<InputFile> ParseInput(const uint8_t* data, size_t size) {
  std::vector<InputFile> out;
  if (size < 1) return out;
  out.push_back({"", std::string(1, static_cast<char>(data[0] & 1))});
  size_t i = 1;
  while (i < size) {
    const size_t nlen = data[i++];
    if (size - i < nlen + 4) break;
    std::string name(reinterpret_cast<const char*>(data + i), nlen);
    i += nlen;
    uint32_t len;
    std::memcpy(&len, data + i, 4);
    i += 4;
    if (len > size - i) len = static_cast<uint32_t>(size - i);
    std::string d(reinterpret_cast<const char*>(data + i), len);
    i += len;
    if (ValidName(name)) out.push_back({name, d});
  }
  return out;
}

inline std::string Serialize(int mode, const std::vector<InputFile>& files) {
  std::string out(1, static_cast<char>(mode));
  for (const InputFile& f : files) {
    if (f.name.empty()) continue;
    out += static_cast<char>(f.name.size());
    out += f.name;
    const uint32_t len = static_cast<uint32_t>(f.data.size());
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += f.data;
  }
  return out;
}

inline bool WriteFile(const std::string& path, const std::string& data, uint64_t size = 0) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  if (ok && size > data.size()) ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
  ::close(fd);
  return ok;
}

inline std::string Header(FileKind kind, uint32_t version, const std::string& id, uint64_t size, uint64_t hash) {
  FileHeader h;
  h.format_version = version;
  h.kind = kind;
  h.image_id = id;
  h.payload_size = size;
  h.payload_hash = hash;
  uint8_t hdr[kHeaderSize];
  EncodeHeader(h, hdr);
  return std::string(reinterpret_cast<const char*>(hdr), h.header_size);
}

// Writes the input's files into `dir` (empty), by its mode.
inline bool WriteImage(const std::string& dir, const std::vector<InputFile>& files) {
  if (files.empty()) return false;
  const bool payloads = files[0].data[0] == 1;
  if (!payloads) {
    for (size_t i = 1; i < files.size(); ++i) WriteFile(dir + "/" + files[i].name, files[i].data);
    return true;
  }
  const std::string id(kImageIdSize, '\x5a');
  Inventory inv;
  bool has_inv = false;
  uint32_t version = kFormatVersion;
  for (size_t i = 1; i < files.size(); ++i)
    if (files[i].name == InventoryName() && inv.ParseFromString(files[i].data)) {
      has_inv = true;
      if (inv.format_version() == 1) version = 1;
    }
  const std::string hid = version >= 2 ? id : "";
  std::map<std::string, uint64_t> sizes;
  for (size_t i = 1; i < files.size(); ++i) {
    const InputFile& f = files[i];
    if (f.name == InventoryName()) continue;
    std::string content;
    uint64_t size = 0;
    if (IsPageFile(f.name)) {
      // Data, or as many pages as the record of the file gives.
      uint64_t pages = f.data.size() / kPageSize;
      if (f.data.empty()) {
        for (const InputFile& r : files) {
          if (f.name == ShmPagesName() && r.name == ShmName()) {
            ShmTable t;
            if (t.ParseFromString(r.data)) pages = t.total_pages();
          } else if (r.name == "mm-" + f.name.substr(6)) {
            Mm mm;
            if (mm.ParseFromString(r.data)) pages = mm.total_pages();
          }
        }
      }
      if (pages > (1u << 20)) pages = 1u << 20;
      content = Header(FileKind::kPages, version, hid, pages * kPageSize, 0);
      content.resize(kPageDataOffset, '\0');
      content += f.data.substr(0, pages * kPageSize);
      size = kPageDataOffset + pages * kPageSize;
    } else {
      content = Header(KindOfName(f.name), version, hid, f.data.size(), HashBytes(f.data.data(), f.data.size())) + f.data;
    }
    if (!WriteFile(dir + "/" + f.name, content, size)) return false;
    sizes[f.name] = std::max<uint64_t>(size, content.size());
  }
  if (!has_inv) {
    for (const InputFile& f : files)
      if (f.name == InventoryName())
        WriteFile(dir + "/" + f.name, Header(FileKind::kInventory, version, hid, f.data.size(),
                                              HashBytes(f.data.data(), f.data.size())) + f.data);
    return true;
  }
  inv.set_format_version(version);
  inv.set_image_id(hid);
  inv.clear_files();
  if (version >= 2)
    for (const auto& [n, s] : sizes) {
      ImageFile* f = inv.add_files();
      f->set_name(n);
      f->set_size(s);
    }
  std::string payload;
  inv.SerializeToString(&payload);
  return WriteFile(dir + "/" + InventoryName(),
                   Header(FileKind::kInventory, version, hid, payload.size(), HashBytes(payload.data(), payload.size())) +
                       payload);
}

}  // namespace cryo::image::fuzz
