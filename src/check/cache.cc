// The cache of `cryo check`: "cryo-check-cache 1", "kernel K", "boot_id B",
// "probe OK REQUIRED NAME DETAIL"..., "end". Fields are percent-encoded so
// they never contain spaces or newlines.
#include "check/cache.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "base/file_util.h"
#include "base/unique_fd.h"

namespace cryo::check {
namespace {

constexpr char kCacheMagic[] = "cryo-check-cache 1";
constexpr size_t kMaxCacheSize = 1 << 20;

std::string Encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c == 0x7f) {
      char buf[4];
      snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

Result<std::string> Decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return Status::Error("truncated escape");
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return Status::Error("bad escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Result<bool> ParseBool(std::string_view s) {
  if (s == "1") return true;
  if (s == "0") return false;
  return Status::Error("bad flag '" + std::string(s) + "'");
}

}  // namespace

Result<Report> ReadCache(const std::string& path) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadOwnedSmallFile(path, kMaxCacheSize));
  auto report = ParseReport(text);
  if (!report.ok()) return report.status().Prefixed("parsing " + path);
  return report;
}

Status WriteCache(const std::string& path, const Report& report) {
  return ReplaceFileOwnerOnly(path, SerializeReport(report)).Prefixed("the check cache");
}

std::string SerializeReport(const Report& report) {
  std::string out = std::string(kCacheMagic) + "\n";
  out += "kernel " + Encode(report.kernel_release) + "\n";
  out += "boot_id " + Encode(report.boot_id) + "\n";
  for (const Probe& p : report.probes)
    out += std::string("probe ") + (p.ok ? "1 " : "0 ") + (p.required ? "1 " : "0 ") + Encode(p.name) + " " + Encode(p.detail) + "\n";
  out += "end\n";
  return out;
}

Result<Report> ParseReport(const std::string& text) {
  if (text.empty() || text.back() != '\n') return Status::Error("truncated cache");
  std::vector<std::string_view> lines = SplitLines(text);
  if (lines.size() < 4 || lines.front() != kCacheMagic || lines.back() != "end") return Status::Error("not a cryo check cache");
  Report r;
  bool have_kernel = false, have_boot = false;
  for (size_t i = 1; i + 1 < lines.size(); ++i) {
    std::vector<std::string_view> w;
    size_t start = 0;
    std::string_view line = lines[i];
    for (;;) {  // split on single spaces; empty fields are allowed
      size_t sp = line.find(' ', start);
      w.push_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
      if (sp == std::string_view::npos) break;
      start = sp + 1;
    }
    if (w[0] == "kernel" && w.size() == 2 && !have_kernel) {
      CRYO_ASSIGN_OR_RETURN(r.kernel_release, Decode(w[1]));
      have_kernel = true;
    } else if (w[0] == "boot_id" && w.size() == 2 && !have_boot) {
      CRYO_ASSIGN_OR_RETURN(r.boot_id, Decode(w[1]));
      have_boot = true;
    } else if (w[0] == "probe" && w.size() == 5) {
      Probe p;
      CRYO_ASSIGN_OR_RETURN(p.ok, ParseBool(w[1]));
      CRYO_ASSIGN_OR_RETURN(p.required, ParseBool(w[2]));
      CRYO_ASSIGN_OR_RETURN(p.name, Decode(w[3]));
      CRYO_ASSIGN_OR_RETURN(p.detail, Decode(w[4]));
      if (p.name.empty()) return Status::Error("probe without a name");
      r.probes.push_back(std::move(p));
    } else {
      return Status::Error("bad cache line " + std::to_string(i + 1));
    }
  }
  if (!have_kernel || !have_boot || r.probes.empty()) return Status::Error("incomplete cache");
  ComputeVerdict(r);
  return r;
}

}  // namespace cryo::check
