// The fd table of a process: each fd kind has a dump half (here, from /proc and
// fdinfo) and a restore half (fd_restore.h). Kinds not supported yet fail the
// dump with the pid, fd number and kind named.
#pragma once

#include <sys/types.h>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

Status DumpFdTable(pid_t pid, image::FdTable* table);

// What an fd link target says it is ("pipe", "socket", "eventfd", ...), for messages.
std::string DescribeFdTarget(const std::string& link);

}  // namespace cryo
