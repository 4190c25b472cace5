// Small helpers for reading files (mostly /proc) and splitting text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo {

// Reads a whole file (works for /proc files whose size is reported as 0).
Result<std::string> ReadFileToString(const std::string& path);
// Writes `data` to an existing file with one write(2), as /proc and cgroup
// files want it (O_WRONLY, no O_CREAT, no O_TRUNC).
Status WriteToFile(const std::string& path, std::string_view data);
// readlink(2) into a string.
Result<std::string> ReadLink(const std::string& path);
std::vector<std::string_view> SplitLines(std::string_view text);
std::vector<std::string_view> SplitWords(std::string_view text);
std::string_view Trim(std::string_view s);
bool StartsWith(std::string_view s, std::string_view prefix);
// write(2) until all of `data` is written (EINTR retried); false if the fd
// fails or the pipe is gone. Async-signal-safe: used after fork.
bool WriteAll(int fd, const void* data, size_t len);
// What a pipe carries until its writers are gone (EINTR retried).
std::string ReadToEof(int fd);

// A cache file of cryo's own (under /run/cryo): read only if it is a regular
// file (not followed through a symbolic link) owned by cryo's euid, writable
// by it alone, and at most `max_size` bytes.
Result<std::string> ReadOwnedSmallFile(const std::string& path, size_t max_size);
// Replaces `path` with `text` atomically (a temporary file beside it renamed
// over it), mode 0600.
Status ReplaceFileOwnerOnly(const std::string& path, std::string_view text);

}  // namespace cryo
