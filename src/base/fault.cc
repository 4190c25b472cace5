#include "base/fault.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace cryo {

namespace {

std::string g_point;
int g_signal = SIGKILL;
bool g_hold_fd = false;
pid_t g_cryo = 0;

// HOLDFD: an fd of our own across a pause, checked to be still ours.
void HoldFd(const char* name) {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  struct stat before, after;
  if (fd < 0 || ::fstat(fd, &before) != 0) return;
  ::usleep(200000);
  if (::fstat(fd, &after) == 0 && after.st_dev == before.st_dev && after.st_ino == before.st_ino &&
      after.st_rdev == before.st_rdev) {
    ::close(fd);
    return;
  }
  const std::string msg = std::string("cryo: fault point ") + name + ": fd " + std::to_string(fd) + " of pid " +
                          std::to_string(::getpid()) + " was closed or replaced while it was held\n";
  (void)!::write(STDERR_FILENO, msg.data(), msg.size());
  ::_exit(1);
}

}  // namespace

void ArmRestoreFaults() {
  const char* v = ::getenv("CRYO_RESTORE_FAULT_POINT");
  if (!v || !*v) return;
  std::string spec = v;
  const size_t colon = spec.find(':');
  g_point = spec.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string sig = spec.substr(colon + 1);
    g_hold_fd = sig == "HOLDFD";
    g_signal = sig == "INT" ? SIGINT : sig == "TERM" ? SIGTERM : sig == "KILL" ? SIGKILL : std::atoi(sig.c_str());
  }
  g_cryo = ::getpid();
}

void RestoreFaultPoint(const char* name) {
  if (g_point.empty() || g_point != name) return;
  if (g_hold_fd) return HoldFd(name);
  ::kill(g_cryo, g_signal);
  // The init of a new PID namespace (restore --pidns new) ignores the
  // signals it sends itself (pid_namespaces(7)): it ends as if killed.
  if (::getpid() == g_cryo && g_cryo == 1) ::_exit(128 + g_signal);
  if (::getpid() == g_cryo) return;
  // A helper: it goes on once cryo is gone, as if cryo had died right here
  // (its parent-death signal or ptrace's EXITKILL then ends it).
  for (int i = 0; i < 500 && ::kill(g_cryo, 0) == 0; ++i) ::usleep(10000);
}

void RestoreFaultAwait(const char* name) {
  if (g_point.empty() || g_point != name || g_hold_fd) return;
  for (int i = 0; i < 500; ++i) ::usleep(10000);
}

}  // namespace cryo
