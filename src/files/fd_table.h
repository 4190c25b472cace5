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
// With `shell_job`, terminals are the caller's (--shell-job), not refused.
// `tree`: every task of the dumped tree, whose /proc paths are refused.
Status DumpFdTable(pid_t pid, image::FdTable* table, std::set<std::string>* features, bool shell_job = false,
                   const std::set<pid_t>* tree = nullptr);

// What an fd link target says it is ("a pipe", "a socket", ...), for messages.
std::string DescribeFdTarget(const std::string& link);

class FdPool;

// The highest fd number of the table (-1 if empty).
int MaxFd(const image::FdTable& table);
// In the restore helper of `pid`: installs every fd at its number from the
// pool, then finishes the descriptions this process is first to hold. The
// caller has moved its own fds out of the way and closed all but the pool.
Status RestoreFdTable(pid_t pid, const image::FdTable& table, const FdPool& pool);

}  // namespace cryo
