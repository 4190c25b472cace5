#include "dump/precopy_live.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "image/format.h"
#include "proc/proc.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

// The process is gone (or a zombie, whose memory is gone): nothing more can be read.
bool Gone(pid_t pid) {
  auto st = proc::ReadStat(pid);
  return !st.ok() || st->state == 'Z' || st->state == 'X';
}

}  // namespace

Result<std::unique_ptr<LivePageSource>> LivePageSource::Open(pid_t pid) {
  CRYO_ASSIGN_OR_RETURN(auto inner, ProcessPageSource::Open(pid));
  return std::unique_ptr<LivePageSource>(new LivePageSource(pid, std::move(inner)));
}

void LivePageSource::Unread(uint64_t vaddr, uint64_t len, char* dst) {
  std::memset(dst, 0, len);
  if (!unread_.empty() && unread_.back().second == vaddr)
    unread_.back().second += len;
  else
    unread_.push_back({vaddr, vaddr + len});
}

Status LivePageSource::ReadPiece(const PagePiece& p, char* dst) {
  if (gone_) {
    Unread(p.vaddr, p.len, dst);
    return Status::Ok();
  }
  if (inner_->Read(&p, 1, dst).ok()) return Status::Ok();
  // Part of it is unmapped (or mapped again) since the freeze: page by page.
  for (uint64_t off = 0; off < p.len; off += kPage) {
    const PagePiece page{p.vaddr + off, kPage, 0, p.readable};
    if (!gone_ && inner_->Read(&page, 1, dst + off).ok()) continue;
    gone_ = gone_ || Gone(pid_);
    Unread(page.vaddr, kPage, dst + off);
  }
  return Status::Ok();
}

Status LivePageSource::Read(const PagePiece* pieces, size_t n, char* dst) {
  if (!gone_ && inner_->Read(pieces, n, dst).ok()) return Status::Ok();
  if (!gone_ && Gone(pid_)) {
    // It exited during the copy: no later dump finds it (a process of that
    // pid started at another time is stored in full, mem/incremental.h).
    LOG_INFO("pid %d ended during the copy of its pages: the rest stored as zeros", pid_);
    gone_ = true;
  }
  for (size_t i = 0; i < n; ++i) {
    CRYO_RETURN_IF_ERROR(ReadPiece(pieces[i], dst));
    dst += pieces[i].len;
  }
  return Status::Ok();
}

void LiveCopyTestHold() {
  const char* path = std::getenv("CRYO_TEST_PRECOPY_HOLD");
  if (!path || !*path || ::access(path, F_OK) != 0) return;
  const std::string held = std::string(path) + ".held";
  const int fd = ::open(held.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  LOG_INFO("pre-copy: the round's copy is done; held while %s exists (test)", path);
  const double until = Now() + 60;
  while (::access(path, F_OK) == 0 && Now() < until) ::usleep(10000);
}

}  // namespace cryo
