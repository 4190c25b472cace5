#include "base/fd_limit.h"

#include <sys/resource.h>

#include <cerrno>

namespace cryo {

namespace {

std::string HardLimitText() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return "unknown";
  return rl.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(rl.rlim_max);
}

// What to raise: the hard limit of the shell or the service that runs cryo;
// fs.nr_open caps it (setrlimit(2): EPERM above it).
constexpr const char* kHowToRaise =
    "raise cryo's hard RLIMIT_NOFILE (ulimit -Hn N as root, LimitNOFILE= of a systemd unit; fs.nr_open caps it)";

}  // namespace

uint64_t RaiseFdLimit() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit raised = {rl.rlim_max, rl.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return rl.rlim_cur;
}

Status CheckFdLimit(uint64_t need, const std::string& what) {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::FromErrno("getrlimit RLIMIT_NOFILE");
  if (rl.rlim_max == RLIM_INFINITY || need <= rl.rlim_max) return Status::Ok();
  return Status::Error(what + " needs about " + std::to_string(need) + " open fds in cryo at once, above its " +
                       "RLIMIT_NOFILE hard limit of " + std::to_string(rl.rlim_max) + ": " + kHowToRaise);
}

Status FdLimitError(const std::string& what) {
  const int e = errno;
  if (e != EMFILE && e != ENFILE) return Status::Errno(e, what);
  return Status::Errno(e, what + " (cryo's RLIMIT_NOFILE hard limit is " + HardLimitText() + ": " +
                              (e == ENFILE ? "the system's fs.file-max is reached" : kHowToRaise) + ")");
}

}  // namespace cryo
