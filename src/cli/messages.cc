#include "cli/messages.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "base/file_util.h"
#include "base/size_format.h"

namespace cryo::cli {
namespace {

std::string Processes(size_t n) { return std::to_string(n) + (n == 1 ? " process" : " processes"); }

std::string Seconds(double s) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.2f s", s);
  return buf;
}

}  // namespace

std::string DumpedLine(size_t processes, pid_t root, const std::string& dir, uint64_t bytes, double seconds,
                       double frozen_seconds, bool synced) {
  char frozen[48];
  snprintf(frozen, sizeof(frozen), ", frozen %.0f ms", frozen_seconds * 1e3);
  return "dumped " + Processes(processes) + " (pid " + std::to_string(root) + ") to " + dir + ": " + FormatSize(bytes) +
         " in " + Seconds(seconds) + frozen + (synced ? "" : ", not synced");
}

std::string ReceivedLine(const std::string& peer, const std::string& dir, size_t files, uint64_t bytes, double seconds,
                         bool synced) {
  return "received an image from " + peer + " into " + dir + ": " + std::to_string(files) + " files, " +
         FormatSize(bytes) + " in " + Seconds(seconds) + (synced ? ", synced" : ", not synced (post-copy)");
}

std::string RestoredLine(size_t processes, pid_t root, double seconds) {
  return "restored " + Processes(processes) + " (pid " + std::to_string(root) + ") in " + Seconds(seconds);
}

std::string PidValueProblem(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) return "'" + text + "' is not a pid (a positive number)";
  if (v <= 0) return "pid " + text + " names no process (pids are positive numbers)";
  // The kernel never hands out a pid at or above pid_max (proc(5)).
  long long pid_max = 4194304;  // PID_MAX_LIMIT on 64-bit
  auto text_max = ReadFileToString("/proc/sys/kernel/pid_max");
  if (text_max.ok()) pid_max = std::atoll(std::string(Trim(*text_max)).c_str());
  if (pid_max > 0 && v >= pid_max)
    return "pid " + text + " is out of range (/proc/sys/kernel/pid_max is " + std::to_string(pid_max) + ")";
  return "";
}

std::string FirstWord(int argc, const char* const* argv, const std::vector<std::string>& with_value) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (std::find(with_value.begin(), with_value.end(), arg) != with_value.end()) {
      ++i;
      continue;
    }
    if (!arg.starts_with("-")) return arg;
  }
  return "";
}

}  // namespace cryo::cli
