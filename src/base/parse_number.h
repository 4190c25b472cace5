// Parsing the numbers of /proc and fdinfo text.
#pragma once

#include <charconv>
#include <string_view>

#include "base/file_util.h"

namespace cryo {

// Parses all of `s` (surrounding whitespace aside) as an integer of type T in
// `base`; false on an empty string, junk, a sign T cannot hold or overflow.
template <typename T>
bool ParseNumber(std::string_view s, T* out, int base = 10) {
  s = Trim(s);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace cryo
