// eventfd(2): the counter and the semaphore mode are in fdinfo (the mode from
// Linux 6.6 on; before, a read of cryo's duplicate tells it); the restore
// creates a new eventfd and writes the counter into it.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <charconv>

#include "base/file_util.h"
#include "base/kernel_features.h"
#include "base/parse_number.h"
#include "base/unique_fd.h"
#include "files/event_fds.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

class Eventfd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_EVENTFD; }
  const char* name() const override { return "eventfd"; }
  const char* feature() const override { return "eventfd"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:[eventfd]"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    if (s.info.fields.count("eventfd-semaphore") && !PretendMissing("eventfd-semaphore"))
      return ParseEventfdInfo(s.info, out->mutable_eventfd());
    // Before Linux 6.6: the mode is found by reading cryo's duplicate.
    auto count = s.info.fields.find("eventfd-count");
    uint64_t v = 0;
    if (count == s.info.fields.end() || !ParseNumber(count->second, &v, 16))
      return Status::Error("fdinfo has no readable eventfd-count line");
    UniqueFd dup(s.Grab());
    if (!dup.valid()) return Status::FromErrno("pidfd_getfd of " + s.what());
    CRYO_ASSIGN_OR_RETURN(bool semaphore, EventfdIsSemaphore(dup.get(), v));
    out->mutable_eventfd()->set_count(v);
    out->mutable_eventfd()->set_semaphore(semaphore);
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const image::EventfdState& e = f.eventfd();
    int flags = (f.flags() & O_NONBLOCK) ? EFD_NONBLOCK : 0;
    if (e.semaphore()) flags |= EFD_SEMAPHORE;
    // eventfd(2) takes a 32-bit initial value: create it empty and add the
    // 64-bit counter with a write.
    int fd = ::eventfd(0, flags | EFD_CLOEXEC);
    if (fd < 0) return Status::FromErrno("eventfd");
    if (e.count() != 0) {
      const uint64_t v = e.count();
      if (::write(fd, &v, sizeof(v)) != sizeof(v)) {
        Status st = Status::FromErrno("writing the count " + std::to_string(v) + " into the eventfd");
        ::close(fd);
        return st;
      }
    }
    return fd;
  }
};

}  // namespace

Status ParseEventfdInfo(const proc::FdInfo& info, image::EventfdState* out) {
  auto count = info.fields.find("eventfd-count");
  if (count == info.fields.end()) return Status::Error("fdinfo has no eventfd-count line");
  uint64_t v = 0;
  if (!ParseNumber(count->second, &v, 16)) return Status::Error("malformed eventfd-count \"" + count->second + "\"");
  out->set_count(v);
  // Before Linux 6.6 fdinfo does not say whether the eventfd counts as a
  // semaphore (EFD_SEMAPHORE), and nothing else shows it: refused rather than
  // restored in the wrong mode.
  auto sem = info.fields.find("eventfd-semaphore");
  if (sem == info.fields.end())
    return Status::Error("this kernel does not show whether the eventfd is in semaphore mode (fdinfo "
                         "\"eventfd-semaphore\", Linux 6.6+), so it cannot be restored in the right mode");
  out->set_semaphore(Trim(sem->second) == "1");
  return Status::Ok();
}

Result<bool> EventfdIsSemaphore(int fd, uint64_t count) {
  auto put = [fd](uint64_t v) -> Status {
    if (::write(fd, &v, sizeof(v)) != sizeof(v)) return Status::FromErrno("eventfd write of " + std::to_string(v));
    return Status::Ok();
  };
  auto take = [fd]() -> Result<uint64_t> {
    uint64_t v = 0;
    if (::read(fd, &v, sizeof(v)) != sizeof(v)) return Status::FromErrno("eventfd read");
    return v;
  };
  // At least 2 in the counter, so that one read tells the modes apart; a
  // read of a non-zero counter and a write that cannot overflow never block.
  const uint64_t added = count < 2 ? 2 - count : 0;
  if (added) CRYO_RETURN_IF_ERROR(put(added));
  CRYO_ASSIGN_OR_RETURN(uint64_t got, take());
  const bool semaphore = got == 1;
  const uint64_t now = count + added - got;
  if (now < count) CRYO_RETURN_IF_ERROR(put(count - now));
  for (uint64_t i = count; i < now; ++i) CRYO_RETURN_IF_ERROR(take().status());  // semaphore: 1 a read
  return semaphore;
}

const FdKindHandler* EventfdHandler() {
  static const Eventfd h;
  return &h;
}

}  // namespace cryo
