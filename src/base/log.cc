#include "base/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace cryo {
namespace {
LogLevel g_stderr_level = LogLevel::kWarn;
int g_log_fd = -1;
const char* const kLevelNames[] = {"error", "warn", "info", "debug"};
}  // namespace

void SetStderrLogLevel(LogLevel level) { g_stderr_level = level; }

Status OpenLogFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("cannot open log file " + path);
  CloseLogFile();
  g_log_fd = fd;
  return Status::Ok();
}

void CloseLogFile() {
  if (g_log_fd >= 0) ::close(g_log_fd);
  g_log_fd = -1;
}

int LogFileFd() { return g_log_fd; }

// Formats into a stack buffer and uses write(2) only, so it is usable in a forked
// restore helper (no stdio locks, no allocation).
void LogMessage(LogLevel level, const char* fmt, ...) {
  const bool to_stderr = level <= g_stderr_level;
  if (!to_stderr && g_log_fd < 0) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > static_cast<int>(sizeof(msg)) - 2) n = sizeof(msg) - 2;
  msg[n++] = '\n';
  msg[n] = '\0';
  const int lvl = static_cast<int>(level);
  if (to_stderr) {
    char line[2100];
    int m = snprintf(line, sizeof(line), "cryo: %s%s", level == LogLevel::kError ? "error: " : level == LogLevel::kWarn ? "warning: " : "", msg);
    if (m > 0) (void)!::write(2, line, m < static_cast<int>(sizeof(line)) ? m : sizeof(line) - 1);
  }
  if (g_log_fd >= 0) {
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    char line[2200];
    int m = snprintf(line, sizeof(line), "%ld.%06ld %d %-5s %s", static_cast<long>(tv.tv_sec), static_cast<long>(tv.tv_usec), getpid(), kLevelNames[lvl], msg);
    if (m > 0) (void)!::write(g_log_fd, line, m < static_cast<int>(sizeof(line)) ? m : sizeof(line) - 1);
  }
}

}  // namespace cryo
