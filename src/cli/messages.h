// What cryo says on success, one line each (without -v), and the checks of
// option values the option parser cannot make.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cryo::cli {

// "dumped 3 processes (pid 1234) to DIR: 256.1 MiB in 0.41 s, frozen 380 ms"
// (", not synced" appended after a --no-sync dump).
std::string DumpedLine(size_t processes, pid_t root, const std::string& dir, uint64_t bytes, double seconds,
                       double frozen_seconds, bool synced);
// "received an image from PEER into DIR: 14 files, 256.1 MiB in 0.52 s, synced"
std::string ReceivedLine(const std::string& peer, const std::string& dir, size_t files, uint64_t bytes, double seconds,
                         bool synced = true);
// "restored 3 processes (pid 1234) in 0.12 s"
std::string RestoredLine(size_t processes, pid_t root, double seconds);

// Why `text` is not a pid a process can have (a positive number up to the
// kernel's pid_max), or "" if it is one. For -t/--pid.
std::string PidValueProblem(const std::string& text);

// The first word of a command line that is not an option (nor the value of
// one of `with_value`): the command it names, or "".
std::string FirstWord(int argc, const char* const* argv, const std::vector<std::string>& with_value);

}  // namespace cryo::cli
