// JSON string literals for cryo's --json outputs (cryo show, cryo check).
#pragma once

#include <string>
#include <string_view>

namespace cryo {

// Appends `s` to `out` as a quoted JSON string: quotes, backslashes and
// control characters escaped (RFC 8259, section 7).
void AppendJsonString(std::string& out, std::string_view s);

inline std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

}  // namespace cryo
