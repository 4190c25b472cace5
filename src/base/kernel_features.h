// Kernel features cryo can do without, and CRYO_PRETEND_MISSING: a
// comma-separated list of `cryo check` probe names ("pagemap-scan,...") that
// makes cryo behave as if the running kernel lacked those features, so that
// the fallbacks for older kernels are exercised on a new one too.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cryo {

inline constexpr char kPretendMissingEnv[] = "CRYO_PRETEND_MISSING";

// The names listed in CRYO_PRETEND_MISSING (empty when unset).
std::vector<std::string> PretendedMissing();

// True when CRYO_PRETEND_MISSING names `feature`.
bool PretendMissing(std::string_view feature);

// Splits a CRYO_PRETEND_MISSING value: names separated by commas, blanks
// around them ignored, empty names dropped.
std::vector<std::string> ParseFeatureList(std::string_view value);

}  // namespace cryo
