// The premap window: one range of address space, reserved by cryo before it
// clones the tree (so every restore helper inherits the reservation), free in
// cryo and at every address any process of the image uses. It holds what each
// helper builds before its restorer blob runs:
//
//   [guard | premap of pid A | guard | premap of pid B | ... ]   premap part
//   [restorer area of A | guard | restorer area of B | ... | guard]  area part
//
// One window for the whole tree lets a child restore helper take over pages
// its parent premapped (inherited by fork, still shared copy-on-write), since
// no process's final VMA can land on any part of it. The restorer blob keeps
// the window, moves its VMAs out, and unmaps the rest of it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "base/status.h"

namespace cryo {

struct WindowSlot {
  uint64_t premap = 0, premap_len = 0;  // this process's premapped VMAs
  uint64_t area = 0, area_len = 0;      // its restorer area (blob, args, stacks)
};

struct PremapWindow {
  uint64_t start = 0, len = 0;
  uint64_t areas_start = 0;  // where the area part begins (end of the premap part)
  std::map<pid_t, WindowSlot> slots;
  uint64_t end() const { return start + len; }
};

struct SlotSize {
  uint64_t premap_len = 0, area_len = 0;  // page multiples
};

// Places a window for `sizes` in a gap of `used` (FindGap's rules).
Result<PremapWindow> PlanPremapWindow(const std::vector<std::pair<uint64_t, uint64_t>>& used,
                                      const std::map<pid_t, SlotSize>& sizes);

}  // namespace cryo
