// The kernel features `cryo check` probes: which are hard requirements, from
// which kernel on they exist, and what cryo does (or cannot do) without each.
// The names are the probe names, also those CRYO_PRETEND_MISSING takes.
#pragma once

#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo::check {

struct Feature {
  std::string_view name;     // the probe's name: "pagemap-scan"
  std::string_view kernel;   // where it comes from: "Linux 6.7"
  bool required;             // no checkpoint or no restore without it
  bool pretendable;          // CRYO_PRETEND_MISSING may name it: cryo has a fallback
  std::string_view without;  // what cryo does, or cannot do, without it
};

// Every probed feature, in `cryo check`'s order.
const std::vector<Feature>& Features();
const Feature* FindFeature(std::string_view name);

// Ok when every name in CRYO_PRETEND_MISSING is a feature cryo can do without;
// else an error naming the others and the names allowed.
Status CheckPretendedNames();

}  // namespace cryo::check
