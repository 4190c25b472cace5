// The fd table of a process. Each fd is dumped and restored by the handler of
// its kind (fd_kind.h); kinds not supported yet fail the dump with the pid, fd
// number and kind named.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

struct DumpScope;

struct FdSource;
// Describes the fd `src` names (pid, fd, pidfd, scope set) into a new entry of
// `table`, with the handler of its kind; adds the features it needs.
Status DescribeFd(FdSource& src, image::FdTable* table, std::set<std::string>* features);

// Dumps every fd; adds the features the image needs for them to `features`.
// With `shell_job`, terminals are the caller's (--shell-job), not refused.
// With `scope`, what fds say about other processes (lock requests waiting on
// them, fd owners) is checked against the tree.
// `infos`, if given, gets the fdinfo of each fd dumped, in the table's order.
Status DumpFdTable(pid_t pid, image::FdTable* table, std::set<std::string>* features, bool shell_job = false,
                   const DumpScope* scope = nullptr, std::vector<proc::FdInfo>* infos = nullptr);

// What an fd link target says it is ("a pipe", "a socket", ...), for messages.
std::string DescribeFdTarget(const std::string& link);

class FdPool;

// The highest fd number of the table (-1 if empty).
int MaxFd(const image::FdTable& table);
// About how many fds cryo needs to restore `tables` (and `in_flight` fds
// queued in UNIX sockets): the fd pool opens each description (each fd
// counted, an upper bound) numbered above the highest fd of the image, and
// the fds open at once are those plus a duplicate of each TCP socket (until
// repair mode ends) and a pipe's two ends meanwhile; the larger of the
// highest pool fd and that count, with a margin for cryo's own. A dump holds
// fewer (a duplicate of each TCP socket): it refuses a tree above cryo's
// hard RLIMIT_NOFILE by this count, so that what it dumps restores.
uint64_t RestoreFdsNeeded(const std::vector<const image::FdTable*>& tables, uint64_t in_flight);
// In the restore helper of `pid`: installs every fd at its number from the
// pool, then finishes the descriptions (epoll registrations, O_ASYNC) that
// one of `users` (the processes using this fd table; empty: `pid` alone) is
// first to hold. The caller has moved its own fds out of the way and closed
// all but the pool.
Status RestoreFdTable(pid_t pid, const image::FdTable& table, const FdPool& pool,
                      const std::vector<pid_t>& users = {});

}  // namespace cryo
