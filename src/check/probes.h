// `cryo check`: probes the running kernel for every feature checkpoint/restore
// relies on. Each probe exercises the feature for real (mostly against a child
// it forks, kills and reaps itself with a bounded wait) instead of trusting
// version numbers or config files.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace cryo::check {

struct Probe {
  std::string name;      // "ptrace-seize", "xsave", ...
  bool ok = false;
  bool required = false;  // can_checkpoint needs every required probe ok
  std::string detail;     // what was found, or why it failed
};

struct Report {
  std::string kernel_release;  // uname -r
  std::string boot_id;         // /proc/sys/kernel/random/boot_id
  std::vector<Probe> probes;
  bool can_checkpoint = false;
  std::string why;  // empty when can_checkpoint, else a sentence naming the failed required probes
};

// Runs every probe against the running kernel (well under a second).
Report RunProbes();

// Returns the report cached in `cache_path` when it was made for the running
// kernel release and boot id (and `refresh` is false); otherwise runs the probes
// and rewrites the cache (mode 0600, atomically). A cache that cannot be parsed,
// or is not owned by the caller, is ignored. Failing to write the cache is only
// logged. Fails only when the kernel release or boot id cannot be read.
Result<Report> LoadOrRunProbes(const std::string& cache_path, bool refresh);

// One line per probe ("ok    name   detail" / "FAIL  name   detail"), then a verdict line.
std::string FormatText(const Report& report);
// {"kernel":..,"boot_id":..,"can_checkpoint":..,"why":..,"probes":[{"name":..,"ok":..,"required":..,"detail":..}]}
std::string FormatJson(const Report& report);

// /run/cryo/check.cache, or /tmp/cryo-check.cache when /run/cryo cannot be created.
std::string DefaultCachePath();

// Marks the probes CRYO_PRETEND_MISSING names as failed (LoadOrRunProbes does,
// after caching the real results), then recomputes the verdict.
void ApplyPretendedMissing(Report& report);

// Exposed for tests and the cache: sets can_checkpoint and why from the probes.
void ComputeVerdict(Report& report);
// The cache file's contents for `report`, and its parser (errors on any malformed input).
std::string SerializeReport(const Report& report);
Result<Report> ParseReport(const std::string& text);

}  // namespace cryo::check
