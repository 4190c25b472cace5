#include "base/size_format.h"

#include <cmath>
#include <cstdio>
#include <ctime>

namespace cryo {

std::string FormatSize(uint64_t bytes) {
  constexpr double kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
  const double b = static_cast<double>(bytes);
  // Each unit as long as its one-decimal rounding stays below 1024.
  auto fits = [b](double unit) { return std::round(b / unit * 10) < 10240; };
  char buf[48];
  if (fits(kKiB)) {
    if (bytes % 1024 == 0)
      snprintf(buf, sizeof(buf), "%llu KiB", static_cast<unsigned long long>(bytes / 1024));
    else
      snprintf(buf, sizeof(buf), "%.1f KiB", b / kKiB);
  } else if (fits(kMiB)) {
    snprintf(buf, sizeof(buf), "%.1f MiB", b / kMiB);
  } else {
    snprintf(buf, sizeof(buf), "%.1f GiB", b / kGiB);
  }
  return buf;
}

std::string FormatTimeNs(int64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  char date[40];
  if (ns < 0 || !::gmtime_r(&secs, &tm) || !::strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm))
    return std::to_string(ns) + " ns";
  char out[64];
  snprintf(out, sizeof(out), "%s.%09lld UTC", date, static_cast<long long>(ns % 1000000000));
  return out;
}

}  // namespace cryo
