// The fd table of a process. Each fd is dumped and restored by the handler of
// its kind (fd_kind.h); kinds not supported yet fail the dump with the pid, fd
// number and kind named.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// Dumps every fd; adds the features the image needs for them to `features`.
Status DumpFdTable(pid_t pid, image::FdTable* table, std::set<std::string>* features);

// What an fd link target says it is ("a pipe", "a socket", ...), for messages.
std::string DescribeFdTarget(const std::string& link);

// In the restore helper: the highest fd number of the table (-1 if empty), and
// opening every fd at its number. The caller has moved its own fds above
// MaxFd(table) and closed everything else.
int MaxFd(const image::FdTable& table);
Status RestoreFdTable(const image::FdTable& table);

}  // namespace cryo
