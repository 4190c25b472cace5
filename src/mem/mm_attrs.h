// Memory settings of a whole address space that no VMA shows: THP disabled
// (prctl PR_SET_THP_DISABLE), mlockall(MCL_FUTURE) for later mappings (mm
// def_flags) and membarrier(2) registrations. Dump: read by remote system
// calls in the batch of a process's queries (tree/task_dump.h, the caller's
// extra calls) and by a probe of cryo's scratch mapping; restore: set by the restore helper, whose address
// space becomes the restored process's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "proc/proc.h"

namespace cryo {

// The remote system calls that read THP disable and the membarrier
// registrations (PR_GET_THP_DISABLE, MEMBARRIER_CMD_GET_REGISTRATIONS; both
// only read); their raw results go to MmAttributesFromResults, in order.
std::vector<RemoteCall> MmAttributeCalls();
void MmAttributesFromResults(const long* results, image::MmAttributes* out);

// mlockall(MCL_FUTURE) leaves no mark on the mappings that exist; it sets the
// mm's def_flags, which every later mapping takes. cryo's scratch mapping in
// the target ([scratch, scratch + len), just made by a remote mmap) is such a
// later mapping: it was locked if the process's locked memory (VmLck) is more
// than its VM_LOCKED VMAs ("lo" in `vmas`, read before the scratch mapping).
// Sets out->mlock_future (MCL_FUTURE, with MCL_ONFAULT if the scratch VMA
// shows "lf").
Status ProbeLockFuture(pid_t pid, const std::vector<proc::Vma>& vmas, uint64_t scratch, uint64_t len,
                       image::MmAttributes* out);

// Whether anything in `a` is set (feature "mm-attributes").
bool HasMmAttributes(const image::MmAttributes& a);

// In the restore helper, once its children are cloned (fork passes THP
// disable and membarrier registrations on; each process gets its own as the
// image has them): THP disable as in the image (also 0: what the helper
// inherited from cryo goes), the membarrier registrations.
Status RestoreMmAttributes(const image::MmAttributes& a);
// The helper's very last step before the restorer blob (which maps nothing):
// mlockall with the image's MCL_FUTURE flags. As root (CAP_IPC_LOCK), before
// the blob switches to the process's credentials: RLIMIT_MEMLOCK is checked
// only when memory is locked, so the restored process ends with the
// original's locked state whatever its limit.
Status LockFutureMappings(const image::MmAttributes& a);

}  // namespace cryo
