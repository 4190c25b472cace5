// timerfd_create(2): clock, settime flags, time left, interval and the
// expirations not read yet are in fdinfo. The restore creates a new timerfd and
// arms it with the time that was left.
//
// What cannot be exact:
//  - a relative timer stops counting while the process is not running: it is
//    armed with the time that was left at the dump, so the time between dump
//    and restore is not counted (as if the process had been frozen);
//  - a TFD_TIMER_ABSTIME timer is armed at the same absolute time of its clock
//    (clock reading at the dump + time left); expirations that fall between
//    dump and restore are counted by the kernel as ticks, as for a live timer;
//  - a periodic timer that expired and whose ticks were not read yet shows 0 as
//    time left (the kernel forwards it only on read): the phase of its next
//    expiry is lost; it is armed to expire one interval after the restore;
//  - the unread ticks are set with TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE);
//    on a kernel without it, a timer with ticks pending is armed to expire at
//    once, so the process sees it readable with 1 tick instead of N.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <charconv>

#include "base/file_util.h"
#include "base/parse_number.h"
#include "files/event_fds.h"
#include "files/fd_kind.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace cryo {

namespace {

constexpr uint64_t kNsPerSec = 1000000000ull;

// "(sec, nsec)" -> nanoseconds.
bool ParseTimespec(std::string_view s, uint64_t* ns) {
  s = Trim(s);
  if (s.size() < 5 || s.front() != '(' || s.back() != ')') return false;
  s = s.substr(1, s.size() - 2);
  const size_t comma = s.find(',');
  if (comma == std::string_view::npos) return false;
  uint64_t sec = 0, nsec = 0;
  if (!ParseNumber(s.substr(0, comma), &sec) || !ParseNumber(s.substr(comma + 1), &nsec) || nsec >= kNsPerSec) return false;
  *ns = sec * kNsPerSec + nsec;
  return true;
}

const std::string* Field(const proc::FdInfo& info, const char* key) {
  auto it = info.fields.find(key);
  return it == info.fields.end() ? nullptr : &it->second;
}

struct timespec ToTimespec(uint64_t ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / kNsPerSec);
  ts.tv_nsec = static_cast<long>(ns % kNsPerSec);
  return ts;
}

class Timerfd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_TIMERFD; }
  const char* name() const override { return "timerfd"; }
  const char* feature() const override { return "timerfd"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:[timerfd]"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    image::TimerfdState* t = out->mutable_timerfd();
    CRYO_RETURN_IF_ERROR(ParseTimerfdInfo(s.info, t));
    struct timespec now;
    if (::clock_gettime(t->clockid(), &now) == 0)
      t->set_clock_ns(static_cast<uint64_t>(now.tv_sec) * kNsPerSec + static_cast<uint64_t>(now.tv_nsec));
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    const image::TimerfdState& t = f.timerfd();
    const int flags = TFD_CLOEXEC | ((f.flags() & O_NONBLOCK) ? TFD_NONBLOCK : 0);
    int fd = ::timerfd_create(t.clockid(), flags);
    if (fd < 0) return Status::FromErrno("timerfd_create on clock " + std::to_string(t.clockid()));
    Status s = Arm(fd, t);
    if (!s.ok()) {
      ::close(fd);
      return s;
    }
    return fd;
  }

 private:
  static Status Arm(int fd, const image::TimerfdState& t) {
    struct itimerspec its{};
    its.it_interval = ToTimespec(t.interval_ns());
    uint64_t value = t.value_ns();
    int flags = 0;
    if (value == 0 && t.ticks() != 0 && t.interval_ns() != 0) {
      value = t.interval_ns();  // expired, not forwarded yet: phase unknown
    } else if (value != 0 && (t.settime_flags() & TFD_TIMER_ABSTIME) && t.clock_ns() != 0) {
      value += t.clock_ns();
      flags = t.settime_flags() & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    }
    its.it_value = ToTimespec(value);
    if (::timerfd_settime(fd, flags, &its, nullptr) != 0) return Status::FromErrno("timerfd_settime");
    if (t.ticks() == 0) return Status::Ok();
    uint64_t ticks = t.ticks();
    if (::ioctl(fd, TFD_IOC_SET_TICKS, &ticks) == 0) return Status::Ok();
    if (errno != ENOTTY && errno != EINVAL) return Status::FromErrno("TFD_IOC_SET_TICKS " + std::to_string(ticks));
    // No way to set the ticks: make it readable at once, with one tick.
    its.it_value = ToTimespec(1);
    if (::timerfd_settime(fd, 0, &its, nullptr) != 0) return Status::FromErrno("timerfd_settime (expire at once)");
    return Status::Ok();
  }
};

}  // namespace

Status ParseTimerfdInfo(const proc::FdInfo& info, image::TimerfdState* out) {
  const std::string* clockid = Field(info, "clockid");
  const std::string* ticks = Field(info, "ticks");
  const std::string* flags = Field(info, "settime flags");
  const std::string* value = Field(info, "it_value");
  const std::string* interval = Field(info, "it_interval");
  if (!clockid || !ticks || !flags || !value || !interval)
    return Status::Error("fdinfo lacks one of clockid, ticks, settime flags, it_value, it_interval");
  int32_t c = 0, fl = 0;
  uint64_t n = 0, v = 0, iv = 0;
  if (!ParseNumber(*clockid, &c)) return Status::Error("malformed clockid \"" + *clockid + "\"");
  if (!ParseNumber(*ticks, &n)) return Status::Error("malformed ticks \"" + *ticks + "\"");
  if (!ParseNumber(*flags, &fl, 8)) return Status::Error("malformed settime flags \"" + *flags + "\"");
  if (!ParseTimespec(*value, &v)) return Status::Error("malformed it_value \"" + *value + "\"");
  if (!ParseTimespec(*interval, &iv)) return Status::Error("malformed it_interval \"" + *interval + "\"");
  out->set_clockid(c);
  out->set_ticks(n);
  out->set_settime_flags(fl);
  out->set_value_ns(v);
  out->set_interval_ns(iv);
  return Status::Ok();
}

const FdKindHandler* TimerfdHandler() {
  static const Timerfd h;
  return &h;
}

}  // namespace cryo
