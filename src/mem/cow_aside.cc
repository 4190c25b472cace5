#include "mem/cow_aside.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "image/format.h"

namespace cryo {

namespace {
constexpr uint64_t kPage = image::kPageSize;
}  // namespace

uint64_t CowAside::DefaultLimit() {
  // For tests: a small limit makes the spill file take nearly every page.
  if (const char* v = ::getenv("CRYO_COW_ASIDE_KIB")) return std::strtoull(v, nullptr, 10) << 10;
  return 1ull << 20;
}

Status CowAside::OpenSpill() {
  spill_.reset(::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (spill_.valid()) return Status::Ok();
  // A file system without O_TMPFILE (EOPNOTSUPP, EISDIR on old kernels): a
  // named file, removed at once.
  std::string path = dir_ + "/.cow-aside-XXXXXX";
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("making the copy-on-write spill file in " + dir_);
  spill_.reset(fd);
  if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path);
  return Status::Ok();
}

Status CowAside::Put(uint64_t page, const char* bytes) {
  if (Has(page)) return Status::Ok();
  if (mem_bytes_ + kPage <= limit_) {
    mem_.emplace(page, std::string(bytes, kPage));
    mem_bytes_ += kPage;
    if (mem_bytes_ > peak_mem_) peak_mem_ = mem_bytes_;
    return Status::Ok();
  }
  if (!spill_.valid()) CRYO_RETURN_IF_ERROR(OpenSpill());
  uint64_t off = spill_end_;
  if (!free_slots_.empty()) {
    off = free_slots_.back();
    free_slots_.pop_back();
  }
  for (uint64_t done = 0; done < kPage;) {
    const ssize_t w = ::pwrite(spill_.get(), bytes + done, kPage - done, static_cast<off_t>(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::Errno(w < 0 ? errno : ENOSPC, "writing the copy-on-write spill file in " + dir_);
    done += static_cast<uint64_t>(w);
  }
  if (off == spill_end_) spill_end_ += kPage;
  spilled_.emplace(page, off);
  ++spilled_total_;
  return Status::Ok();
}

Result<bool> CowAside::Take(uint64_t page, char* dst) {
  if (auto it = mem_.find(page); it != mem_.end()) {
    std::memcpy(dst, it->second.data(), kPage);
    mem_.erase(it);
    mem_bytes_ -= kPage;
    return true;
  }
  auto it = spilled_.find(page);
  if (it == spilled_.end()) return false;
  for (uint64_t done = 0; done < kPage;) {
    const ssize_t r = ::pread(spill_.get(), dst + done, kPage - done, static_cast<off_t>(it->second + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Status::Errno(r < 0 ? errno : EIO, "reading the copy-on-write spill file in " + dir_);
    done += static_cast<uint64_t>(r);
  }
  free_slots_.push_back(it->second);
  spilled_.erase(it);
  return true;
}

void CowAside::Drop(uint64_t start, uint64_t end) {
  for (auto it = mem_.lower_bound(start); it != mem_.end() && it->first < end;) {
    mem_bytes_ -= kPage;
    it = mem_.erase(it);
  }
  for (auto it = spilled_.lower_bound(start); it != spilled_.end() && it->first < end;) {
    free_slots_.push_back(it->second);
    it = spilled_.erase(it);
  }
}

}  // namespace cryo
