// Which fds of a tree share one open file description (dup(2)s, fds inherited
// across fork): kcmp(2) says so exactly. Each description gets an id; the
// restore opens it once and hands the same description to every holder.
#pragma once

#include <vector>

#include "base/status.h"
#include "files/pipe_table.h"

namespace cryo {

Status AssignFileIds(const std::vector<ProcessFds>& tables);

}  // namespace cryo
