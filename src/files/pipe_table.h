// The pipes of a dumped tree as shared objects: capacity and the bytes in
// flight, read without consuming them (tee(2) into a pipe of cryo's own), so a
// process left running still has every byte.
#pragma once

#include <sys/types.h>

#include <set>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

struct ProcessFds {
  pid_t pid;
  image::FdTable* table;
};

// Fails, naming the pipe and the outside process, if a process outside `tree`
// holds an end of a pipe or FIFO of `tables`. The dump runs it before it
// writes anything (DumpPipes checks again once the image is written).
Status CheckPipesHeldOutside(const std::vector<ProcessFds>& tables, const std::set<pid_t>& tree);

// Fills `out` with every pipe held by the tree. Fails, naming the pipe and the
// outside process, if a process outside `tree` holds an end of one of them.
Status DumpPipes(const std::vector<ProcessFds>& tables, const std::set<pid_t>& tree, image::PipeTable* out);

}  // namespace cryo
