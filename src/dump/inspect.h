// The first step of a dump once the tree is seized, before any remote system
// call and before anything is written: describe every process (VMAs, fds)
// and audit what /proc shows about the tree (audit/audit.h).
#pragma once

#include <vector>

#include "audit/item.h"
#include "base/status.h"
#include "dump/prefetch.h"
#include "net/unix_in_flight.h"
#include "tree/tree_seize.h"

namespace cryo {

struct Inspection {
  std::vector<ProcessFacts> facts;  // in the order of tree.processes() (the root first)
  audit::Report report;
  // The fds in flight in the tree's UNIX socket queues, held by cryo until
  // the image is written (net/unix_in_flight.h).
  InFlightFiles in_flight;
};

// Describes every process of `tree` and classifies everything /proc shows
// about it, on several threads; the seize stops are read on this one (the
// tracer). A VMA or fd the describing refuses is one of the report's
// refusals.
Result<Inspection> InspectTree(SeizedTree& tree, bool shell_job, const DumpScope* scope = nullptr);

}  // namespace cryo
