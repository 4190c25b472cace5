#include "mem/premap_window.h"

#include "mem/vma_restore.h"

namespace cryo {

namespace {
constexpr uint64_t kPage = 4096;
}  // namespace

Result<PremapWindow> PlanPremapWindow(const std::vector<std::pair<uint64_t, uint64_t>>& used,
                                      const std::map<pid_t, SlotSize>& sizes) {
  uint64_t premaps = kPage, areas = kPage;
  for (const auto& [pid, s] : sizes) {
    premaps += s.premap_len + kPage;
    areas += s.area_len + kPage;
  }
  PremapWindow w;
  w.len = premaps + areas;
  CRYO_ASSIGN_OR_RETURN(w.start, FindGap(used, w.len));
  w.areas_start = w.start + premaps;
  uint64_t p = w.start + kPage, a = w.areas_start;
  for (const auto& [pid, s] : sizes) {
    WindowSlot& slot = w.slots[pid];
    slot.premap = p;
    slot.premap_len = s.premap_len;
    slot.area = a;
    slot.area_len = s.area_len;
    p += s.premap_len + kPage;
    a += s.area_len + kPage;
  }
  return w;
}

}  // namespace cryo
