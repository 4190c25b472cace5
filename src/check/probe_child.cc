#include "check/probe_child.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/log.h"

namespace cryo::check::probe {

// waitpid() polled until `deadline_ms` passes. Returns the pid, 0 on timeout, -1 on error.
pid_t WaitPidBounded(pid_t pid, int* status, int options, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  long sleep_ns = 20'000;
  for (;;) {
    pid_t r = ::waitpid(pid, status, options | WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0) return r;
    if (Clock::now() >= deadline) return 0;
    struct timespec ts = {0, sleep_ns};
    ::nanosleep(&ts, nullptr);
    sleep_ns = std::min(sleep_ns * 2, 2'000'000L);
  }
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, __WALL, kReapTimeoutMs);
  if (r == 0) LOG_WARN("check: probe child %d not reaped after SIGKILL", pid);
}

// Runs fn() in a forked child and returns its exit code. fn runs after fork() in a

alignas(4096) char g_child_marker[64];

void FormatMarker(char* buf, size_t size, pid_t pid) {
  static const char kPrefix[] = "cryo-probe-child:";
  std::memset(buf, 0, size);
  size_t n = sizeof(kPrefix) - 1;
  std::memcpy(buf, kPrefix, n);
  char digits[16];
  size_t d = 0;
  unsigned long v = static_cast<unsigned long>(pid);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < sizeof(digits));
  while (d > 0 && n + 1 < size) buf[n++] = digits[--d];
}

Result<PausedChild> PausedChild::Start() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe for probe child");
  UniqueFd rd(fds[0]), wr(fds[1]);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno("fork probe child");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::close(fds[0]);
    FormatMarker(g_child_marker, sizeof(g_child_marker), ::getpid());
    if (::write(fds[1], "R", 1) != 1) ::_exit(126);
    for (;;) ::pause();
  }
  PausedChild child(pid, std::move(rd), fds[1]);
  wr.reset();  // the child's copy stays open
  struct pollfd pfd = {child.ready_.get(), POLLIN, 0};
  int r;
  do {
    r = ::poll(&pfd, 1, kChildTimeoutMs);
  } while (r < 0 && errno == EINTR);
  char c = 0;
  if (r <= 0 || ::read(child.ready_.get(), &c, 1) != 1 || c != 'R') return Status::Error("probe child did not start");
  return child;
}


Status SeizeAndInterrupt(pid_t pid) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_EXITKILL)) != 0) return Status::FromErrno("PTRACE_SEIZE");
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT");
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, __WALL, kChildTimeoutMs);
  if (r < 0) return Status::FromErrno("waitpid after PTRACE_INTERRUPT");
  if (r == 0) return Status::Error("no stop within 1s of PTRACE_INTERRUPT");
  if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
    char buf[64];
    snprintf(buf, sizeof(buf), "unexpected wait status 0x%x after PTRACE_INTERRUPT", status);
    return Status::Error(buf);
  }
  return Status::Ok();
}

Probe Fail(Probe p, const Status& st) {
  p.ok = false;
  p.detail = st.ToString();
  return p;
}

std::string Hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

}  // namespace cryo::check::probe
