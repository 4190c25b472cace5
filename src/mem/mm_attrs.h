// Memory settings of a whole address space that no VMA shows: THP disabled
// (prctl PR_SET_THP_DISABLE), mlockall(MCL_FUTURE) for later mappings (mm
// def_flags) and membarrier(2) registrations. Dump: read by remote system
// calls in the batch of a process's queries (task_dump.cc) and by a probe of
// cryo's scratch mapping; restore: set by the restore helper, whose address
// space becomes the restored process's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "proc/proc.h"

namespace cryo {

// The remote system calls that read THP disable and the membarrier
// registrations; their raw results go to MmAttributesFromResults, in order.
// None of them changes the process: PR_GET_THP_DISABLE reads, and an
// expedited membarrier of a process whose threads are all stopped has no CPU
// to interrupt (it fails with EPERM if the process is not registered for it).
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

// prctl(PR_SET_MEMORY_MERGE) makes every mapping of a process mergeable by
// KSM, later ones too; setting it needs CAP_SYS_RESOURCE (prctl(2)), which
// the restore cannot count on (these machines do not grant it): refused,
// from /proc/PID/ksm_stat ("ksm_merge_any: yes"), before any remote call.
Status CheckKsmMergeAny(pid_t pid);
// The "ksm_merge_any" line of a ksm_stat text (false without one).
bool KsmMergeAny(std::string_view ksm_stat);

// Whether anything in `a` is set (feature "mm-attributes").
bool HasMmAttributes(const image::MmAttributes& a);

// In the restore helper, once its children are cloned (fork passes THP
// disable and membarrier registrations on; each process gets its own as the
// image has them): THP disable as in the image (also 0: what the helper
// inherited from cryo goes), the membarrier registrations; and,
// for every process, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, which cannot
// be read at dump (registering only adds barriers the process cannot tell
// from none; missing it could break a program that relies on it).
Status RestoreMmAttributes(const image::MmAttributes& a);
// The helper's very last step before the restorer blob (which maps nothing):
// mlockall with the image's MCL_FUTURE flags. As root (CAP_IPC_LOCK), before
// the blob switches to the process's credentials: RLIMIT_MEMLOCK is checked
// only when memory is locked, so the restored process ends with the
// original's locked state whatever its limit.
Status LockFutureMappings(const image::MmAttributes& a);

}  // namespace cryo
