// Whether a VMA's userfaultfd write-protect registration (VmFlags "uw") is
// cryo's own dirty tracking (mem/dirty_tracker.h) rather than the program's:
// the audit and the VMA description ask here; the dump's tracking session
// answers while it runs (nothing is cryo's otherwise).
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace cryo {

using TrackedRangeCheck = bool (*)(pid_t pid, uint64_t start, uint64_t end);

// Installs (or, with nullptr, removes) the answer.
void SetTrackedRangeCheck(TrackedRangeCheck check);
// True when [start, end) of pid is registered with cryo's tracker only.
bool IsTrackedByCryo(pid_t pid, uint64_t start, uint64_t end);

}  // namespace cryo
