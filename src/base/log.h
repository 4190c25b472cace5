// Logging: messages go to stderr (at the chosen verbosity) and, with --log-file,
// to a log file at full detail with timestamps.
#pragma once

#include <string>

#include "base/status.h"

namespace cryo {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Messages at or below `level` reach stderr.
void SetStderrLogLevel(LogLevel level);
// Everything (debug included) is also appended to `path`.
Status OpenLogFile(const std::string& path);
// Closes the log file (used in a forked restore helper before it remaps its memory).
void CloseLogFile();
// The log file's descriptor, or -1.
int LogFileFd();

void LogMessage(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace cryo

#define LOG_ERROR(...) ::cryo::LogMessage(::cryo::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) ::cryo::LogMessage(::cryo::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) ::cryo::LogMessage(::cryo::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) ::cryo::LogMessage(::cryo::LogLevel::kDebug, __VA_ARGS__)
