// The cache file: "cryo-btf-cache 1", "key K" (the rest of the line), one
// "v NAME VALUE" per value (NAME without spaces), "xxh3 H": H the XXH3-64 of
// every byte before that line, in hex.
#include "bpf/btf_cache.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace cryo::bpf {

namespace {

constexpr char kMagic[] = "cryo-btf-cache 1";
constexpr size_t kMaxSize = 64 << 10;
std::atomic<uint64_t> parses{0};

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  const std::string str(s);
  char* end = nullptr;
  errno = 0;
  const long long v = ::strtoll(str.c_str(), &end, 10);
  if (errno != 0 || end == nullptr || *end != '\0') return false;
  *out = v;
  return true;
}

std::string OffsetName(const char* type, std::initializer_list<std::string_view> path, size_t size) {
  std::string name = std::string("offset:") + type;
  for (std::string_view p : path) name += "." + std::string(p);
  return name + ":" + std::to_string(size);
}

}  // namespace

Result<std::string> KernelCacheKey() {
  CRYO_ASSIGN_OR_RETURN(const std::string boot, ReadFileToString("/proc/sys/kernel/random/boot_id"));
  struct utsname u;
  if (::uname(&u) != 0) return Status::FromErrno("uname");
  struct stat st;
  if (::stat("/sys/kernel/btf/vmlinux", &st) != 0) return Status::FromErrno("stat /sys/kernel/btf/vmlinux");
  std::string key = std::string(Trim(boot)) + " " + u.release + " " + u.version + " " + std::to_string(st.st_size);
  for (char& c : key)
    if (c == '\n') c = ' ';
  return key;
}

std::string DefaultBtfCachePath() {
  if (::mkdir("/run/cryo", 0700) != 0 && errno != EEXIST) return "";
  struct stat st;
  if (::lstat("/run/cryo", &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
    return "";
  return "/run/cryo/btf.cache";
}

std::string SerializeBtfCache(const std::string& key, const BtfValues& values) {
  std::string out = std::string(kMagic) + "\nkey " + key + "\n";
  for (const auto& [name, v] : values) out += "v " + name + " " + std::to_string(v) + "\n";
  return out + "xxh3 " + Hex(XXH3_64bits(out.data(), out.size())) + "\n";
}

Result<BtfValues> ParseBtfCache(std::string_view text, const std::string& key) {
  if (text.empty() || text.back() != '\n') return Status::Error("truncated");
  const size_t last = text.rfind('\n', text.size() - 2);
  if (last == std::string_view::npos) return Status::Error("not a cryo BTF cache");
  const std::string_view body = text.substr(0, last + 1), sum = text.substr(last + 1);
  if (sum != "xxh3 " + Hex(XXH3_64bits(body.data(), body.size())) + "\n") return Status::Error("checksum mismatch");
  const std::vector<std::string_view> lines = SplitLines(body);
  if (lines.size() < 2 || lines[0] != kMagic || !StartsWith(lines[1], "key ")) return Status::Error("not a cryo BTF cache");
  if (lines[1].substr(4) != key) return Status::Error("made for another boot or kernel");
  BtfValues out;
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::vector<std::string_view> w = SplitWords(lines[i]);
    int64_t v = 0;
    if (w.size() != 3 || w[0] != "v" || !ParseInt(w[2], &v) || !out.emplace(std::string(w[1]), v).second)
      return Status::Error("bad line " + std::to_string(i + 1));
  }
  return out;
}

Result<BtfValues> ReadBtfCache(const std::string& path, const std::string& key) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadOwnedSmallFile(path, kMaxSize));
  Result<BtfValues> v = ParseBtfCache(text, key);
  if (!v.ok()) return v.status().Prefixed(path);
  return v;
}

Status WriteBtfCache(const std::string& path, const std::string& key, const BtfValues& values) {
  return ReplaceFileOwnerOnly(path, SerializeBtfCache(key, values));
}

uint64_t KernelBtfParses() { return parses.load(); }

BtfLookups::BtfLookups(std::string cache_path, std::string key) : path_(std::move(cache_path)), key_(std::move(key)) {
  if (path_.empty() || key_.empty()) path_.clear();
}

Result<const btf*> BtfLookups::Btf() {
  if (!btf_) {
    CRYO_ASSIGN_OR_RETURN(btf_, LoadKernelBtf());
    parses.fetch_add(1);
  }
  return btf_.get();
}

// The cached value `name`; an error when there is none (read the BTF).
Result<int64_t> BtfLookups::Cached(const std::string& name) {
  if (path_.empty()) return Status::Error("no cache");
  if (!read_) {
    read_ = true;
    Result<BtfValues> c = ReadBtfCache(path_, key_);
    if (c.ok())
      cached_ = std::move(*c);
    else
      miss_ = c.status().ToString();
  }
  auto it = cached_.find(name);
  if (it == cached_.end()) {
    if (miss_.empty()) miss_ = name + " is not in " + path_;
    return Status::Error("not cached");
  }
  used_cache_ = true;
  return it->second;
}

Result<int16_t> BtfLookups::Offset(const char* type, std::initializer_list<std::string_view> path, size_t size) {
  const std::string name = OffsetName(type, path, size);
  if (Result<int64_t> c = Cached(name); c.ok() && *c >= 0 && *c <= INT16_MAX) {
    values_[name] = *c;
    return static_cast<int16_t>(*c);
  }
  CRYO_ASSIGN_OR_RETURN(const btf* b, Btf());
  CRYO_ASSIGN_OR_RETURN(const int16_t off, PathOffset(b, type, path, size));
  values_[name] = off;
  dirty_ = true;
  return off;
}

Result<uint32_t> BtfLookups::Function(const char* name, const std::string& missing) {
  const std::string key = std::string("func:") + name;
  if (Result<int64_t> c = Cached(key); c.ok() && *c > 0 && *c <= UINT32_MAX) {
    values_[key] = *c;
    return static_cast<uint32_t>(*c);
  }
  CRYO_ASSIGN_OR_RETURN(const btf* b, Btf());
  CRYO_ASSIGN_OR_RETURN(const uint32_t id, FunctionId(b, name, missing));
  values_[key] = id;
  dirty_ = true;
  return id;
}

void BtfLookups::Distrust() {
  if (path_.empty()) return;
  read_ = true;  // no second read
  cached_.clear();
  values_.clear();
  used_cache_ = false;
  dirty_ = true;  // rewrite it, even if every value then matches
}

Status BtfLookups::Save() {
  if (path_.empty() || !dirty_) return Status::Ok();
  // Keep the cached values no lookup of this run replaced (another
  // program's), unless the cache was distrusted.
  BtfValues all = cached_;
  for (const auto& [name, v] : values_) all[name] = v;
  CRYO_RETURN_IF_ERROR(WriteBtfCache(path_, key_, all));
  dirty_ = false;
  return Status::Ok();
}

}  // namespace cryo::bpf
