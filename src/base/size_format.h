// Sizes for people: every size cryo prints (success lines, progress, `cryo
// show`, the log) goes through FormatSize, so that a small image does not
// read "0 MiB".
#pragma once

#include <cstdint>
#include <string>

namespace cryo {

// "0 KiB", "12 KiB", "0.5 KiB" below 1 MiB; "256.1 MiB" below 1 GiB; "1.5 GiB"
// above (binary units, one decimal; whole KiB without one).
std::string FormatSize(uint64_t bytes);

// A time in nanoseconds since the epoch (a file's mtime), to the nanosecond:
// "2026-12-06 20:11:43.000000001 UTC".
std::string FormatTimeNs(int64_t ns);

}  // namespace cryo
