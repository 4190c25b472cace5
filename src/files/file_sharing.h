// Which fds of a tree share one open file description (dup(2)s, fds inherited
// across fork): kcmp(2) says so exactly. Each description gets an id; the
// restore opens it once and hands the same description to every holder.
#pragma once

#include <map>
#include <vector>

#include "base/status.h"
#include "files/pipe_table.h"

namespace cryo {

Status AssignFileIds(const std::vector<ProcessFds>& tables);

// Refuses a pidfd description held in two fd tables (`table_of`: the process
// whose table each one uses): each holder makes its pidfd once the tree
// exists, so they could not share it again (files/pidfd.cc).
Status CheckPidfdSharing(const std::vector<ProcessFds>& tables, const std::map<pid_t, pid_t>& table_of);

}  // namespace cryo
