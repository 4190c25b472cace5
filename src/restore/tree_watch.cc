#include "restore/tree_watch.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "proc/proc.h"
#include "restore/helper.h"
#include "restorer/restorer_args.h"

namespace cryo {

TreeGuard::~TreeGuard() {
  if (released_) return;
  for (pid_t pid : pids_) {
    auto st = proc::ReadStatus(pid);
    if (st.ok() && st->tracer_pid == ::getpid()) ::kill(pid, SIGKILL);
  }
  ::kill(root_, SIGKILL);
  // Reap what is ours (the root, and every traced task's exit report) and let
  // the kernel collect the rest. Bounded: nothing else may keep cryo here.
  const double deadline = Now() + 10;
  for (;;) {
    int st;
    pid_t r = ::waitpid(-1, &st, __WALL | WNOHANG);
    if (r < 0 && errno != EINTR) break;
    if (r == 0) {
      if (Now() > deadline) break;
      ::usleep(1000);
    }
  }
}

void StatusReader::Parse() {
  size_t i = 0;
  while (i < buf_.size()) {
    const auto kind = static_cast<HelperRecord>(buf_[i]);
    if (kind == HelperRecord::kBlobFailure) {
      restorer::Failure f;
      if (buf_.size() - i < sizeof(f)) break;
      std::memcpy(&f, buf_.data() + i, sizeof(f));
      i += sizeof(f);
      char where[32];
      snprintf(where, sizeof(where), "%#llx", static_cast<unsigned long long>(f.addr));
      if (error.empty())
        error = Status::Errno(f.err, "pid " + std::to_string(f.pid) + ": restorer: " + f.step + " (" + where + ")")
                    .ToString();
      continue;
    }
    if (buf_.size() - i < 9) break;
    pid_t pid;
    uint32_t len;
    std::memcpy(&pid, buf_.data() + i + 1, 4);
    std::memcpy(&len, buf_.data() + i + 5, 4);
    if (buf_.size() - i < 9 + len) break;
    const std::string payload = buf_.substr(i + 9, len);
    i += 9 + len;
    switch (kind) {
      case HelperRecord::kWarning:
        LOG_WARN("%s", payload.c_str());
        break;
      case HelperRecord::kInfo:
        LOG_INFO("%s", payload.c_str());
        break;
      case HelperRecord::kError:
        if (error.empty()) error = "pid " + std::to_string(pid) + ": " + payload;
        break;
      case HelperRecord::kCreated:
        ++created;
        break;
      case HelperRecord::kJoined:
        ++joined;
        break;
      case HelperRecord::kArea:
        if (payload.size() == 32) {
          std::memcpy(&reports[pid].area, payload.data(), 8);
          std::memcpy(&reports[pid].area_len, payload.data() + 8, 8);
          std::memcpy(&reports[pid].status_fd, payload.data() + 16, 8);
          int64_t uffd;
          std::memcpy(&uffd, payload.data() + 24, 8);
          reports[pid].uffd = static_cast<int>(uffd);
        }
        break;
      default:
        if (error.empty()) error = "garbled status from the restore helpers";
        i = buf_.size();
    }
  }
  buf_.erase(0, i);
}

}  // namespace cryo
