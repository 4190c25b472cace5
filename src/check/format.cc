// `cryo check`'s output: text for people, JSON for scripts.
#include <algorithm>
#include <cstdio>
#include <string>

#include "base/json_string.h"
#include "check/features.h"
#include "check/probes.h"

namespace cryo::check {
namespace {

}  // namespace

std::string FormatText(const Report& report) {
  size_t width = 18;
  for (const Probe& p : report.probes) width = std::max(width, p.name.size() + 2);
  std::string out, missing, required;
  for (const Probe& p : report.probes) {
    std::string line = p.ok ? "ok    " : "FAIL  ";
    line += p.name;
    line.append(width - p.name.size(), ' ');
    line += p.detail;
    if (!p.ok && !p.required) line += " (optional)";
    out += line + "\n";
    const Feature* f = FindFeature(p.name);
    if (p.required) required += (required.empty() ? "" : ", ") + p.name;
    if (p.ok || f == nullptr) continue;
    // What its absence costs, under the probe's line.
    out += std::string(6, ' ') + (p.required ? "hard requirement (" : "without it (") + std::string(f->kernel) + "): " +
           std::string(f->without) + "\n";
    if (!p.required) missing += (missing.empty() ? "" : ", ") + p.name;
  }
  if (!required.empty()) out += "hard requirements: " + required + "\n";
  if (!missing.empty()) out += "missing, cryo works without them (see above): " + missing + "\n";
  if (report.can_checkpoint)
    out += "verdict: can checkpoint (kernel " + report.kernel_release + ")\n";
  else
    out += "verdict: cannot checkpoint. " + report.why + "\n";
  return out;
}

std::string FormatJson(const Report& report) {
  std::string out = "{\"kernel\":";
  AppendJsonString(out, report.kernel_release);
  out += ",\"boot_id\":";
  AppendJsonString(out, report.boot_id);
  out += ",\"can_checkpoint\":";
  out += report.can_checkpoint ? "true" : "false";
  out += ",\"why\":";
  AppendJsonString(out, report.why);
  out += ",\"probes\":[";
  for (size_t i = 0; i < report.probes.size(); ++i) {
    const Probe& p = report.probes[i];
    out += i ? ",{\"name\":" : "{\"name\":";
    AppendJsonString(out, p.name);
    out += ",\"ok\":";
    out += p.ok ? "true" : "false";
    out += ",\"required\":";
    out += p.required ? "true" : "false";
    out += ",\"detail\":";
    AppendJsonString(out, p.detail);
    if (const Feature* f = FindFeature(p.name)) {
      out += ",\"needs\":";
      AppendJsonString(out, f->kernel);
      out += ",\"without\":";
      AppendJsonString(out, f->without);
    }
    out += '}';
  }
  out += "]}\n";
  return out;
}

}  // namespace cryo::check
