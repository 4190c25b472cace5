// Refusals of objects the tree shares: decided from what /proc shows, right
// after the audit and before the first file of the image is written, so that a
// refused dump leaves no directory and the tree untouched. The writers check
// again (pipe_table.h, shm_dump.h, unlinked_dump.h) in case something outside
// the tree changed meanwhile.
#pragma once

#include <vector>

#include "base/status.h"
#include "dump/prefetch.h"
#include "net/unix_in_flight.h"
#include "tree/tree_seize.h"

namespace cryo {

// Refuses, naming the holder in the tree and the process outside it:
// - a pipe or FIFO with an end held by a process outside the tree;
// - a shared memory object (memfd, POSIX or SysV shm, shared anonymous
//   memory) held or mapped outside the tree, or of a kind cryo cannot store;
// - an unlinked file also held outside the tree.
// `facts` are in the order of tree.processes().
// `in_flight`: the fds in flight in the tree's UNIX socket queues, which cryo
// holds (net/unix_in_flight.h).
Status CheckSharedObjects(SeizedTree& tree, std::vector<ProcessFacts>& facts, InFlightFiles& in_flight);

}  // namespace cryo
