// The first step of a dump once the tree is seized, before anything is
// written or changed in it: describe every process (VMAs, fds) and audit the
// whole tree (audit/audit.h). Also `cryo check -t PID`, which stops there.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "audit/item.h"
#include "base/status.h"
#include "dump/prefetch.h"
#include "tree/tree_seize.h"

namespace cryo {

struct Inspection {
  std::vector<ProcessFacts> facts;  // in the order of tree.processes() (the root first)
  audit::Report report;
};

// Describes every process of `tree` and classifies everything it holds. A
// VMA or fd the describing refuses is one of the report's refusals.
Result<Inspection> InspectTree(SeizedTree& tree, bool shell_job);

// `cryo check -t PID`: seizes the tree, inspects it and lets it go; prints
// the refusals and a summary (every item with `all`) to stdout. Fails if
// anything is refused.
Status CheckTree(pid_t pid, bool shell_job, bool all);

}  // namespace cryo
