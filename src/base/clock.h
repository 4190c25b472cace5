// Monotonic time for timings and bounded waits.
#pragma once

#include <time.h>

namespace cryo {

// Seconds on CLOCK_MONOTONIC.
inline double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace cryo
