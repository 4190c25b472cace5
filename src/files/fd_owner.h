// Signal-driven I/O of an fd: the owner of its open file description (who
// gets SIGIO and SIGURG: fcntl F_SETOWN / F_SETOWN_EX, a thread, a process or
// a process group), the signal sent instead of SIGIO (F_SETSIG), and O_ASYNC.
#pragma once

#include <map>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "files/fd_kind.h"
#include "image/image_dir.h"
#include "tree/restore_plan.h"

namespace cryo {

// Dump, per fd (DumpFdTable): F_GETOWN_EX and F_GETSIG on a duplicate of the
// description (pidfd_getfd). An owner outside the tree is refused by name: a
// restore could not tell it from whatever process has that pid by then.
// `shown`, if given, gets the values fcntl(2) showed (proc::FdInfo::owner_*).
Status DumpFdOwner(const FdSource& src, image::Fd* out, proc::FdInfo* shown = nullptr);

// Restore, with the restore plan: a process group that owns an fd is
// rebuilt by the restore (its leader is in the image, or a temporary leader
// of the plan makes it). The dump checks this through DumpScope.pgids.
Status CheckOwnerGroups(const RestorePlan& plan, const std::map<pid_t, const image::ProcessCore*>& cores,
                        const std::map<pid_t, const image::FdTable*>& tables);

// Restore, in cryo before anything is cloned: owners name a thread, process
// or process group of the image, signals are signals.
Status CheckFdOwners(const image::LoadedImage& img);

// Restore, in the helper once the fd is at its number: O_ASYNC registered
// again. The kernel keeps the fd number of the call that set it (si_fd of the
// signals, fasync_helper()); the pool set it under the pool's number, and
// open(2) ignores O_ASYNC (open(2), BUGS).
Status RestoreAsync(const image::Fd& f);

// Restore, in cryo at the final stop (every thread of the tree exists), for
// each fd of `pid`: F_SETOWN_EX and F_SETSIG on a duplicate (pidfd_getfd).
// The owner's credentials for the kernel's permission check of each signal
// (sigio_perm()) become cryo's, root.
Status RestoreFdOwners(pid_t pid, const image::FdTable& table);

}  // namespace cryo
