#include "base/kernel_features.h"

#include <algorithm>
#include <cstdlib>

namespace cryo {

std::vector<std::string> ParseFeatureList(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    std::string_view name = value.substr(0, comma);
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (!name.empty()) out.emplace_back(name);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

std::vector<std::string> PretendedMissing() {
  const char* v = std::getenv(kPretendMissingEnv);  // read each time: a few calls a dump
  return v == nullptr ? std::vector<std::string>{} : ParseFeatureList(v);
}

bool PretendMissing(std::string_view feature) {
  const std::vector<std::string> list = PretendedMissing();
  return std::find(list.begin(), list.end(), feature) != list.end();
}

}  // namespace cryo
