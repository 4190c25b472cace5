#include "base/tracked_memory.h"

#include <atomic>

namespace cryo {

namespace {
std::atomic<TrackedRangeCheck> g_check{nullptr};
}  // namespace

void SetTrackedRangeCheck(TrackedRangeCheck check) { g_check.store(check); }

bool IsTrackedByCryo(pid_t pid, uint64_t start, uint64_t end) {
  const TrackedRangeCheck check = g_check.load();
  return check != nullptr && check(pid, start, end);
}

}  // namespace cryo
