// The cache of `cryo check` (see probes.h: LoadOrRunProbes).
#pragma once

#include <string>

#include "base/status.h"
#include "check/probes.h"

namespace cryo::check {

// The report cached in `path`; an error when it is missing, malformed, not a
// regular file, not owned by us or writable by others.
Result<Report> ReadCache(const std::string& path);
// Writes `report` to `path` (mode 0600, atomically).
Status WriteCache(const std::string& path, const Report& report);

}  // namespace cryo::check
