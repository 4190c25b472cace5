// The last step of a restore, per process, once every process of the tree
// has built itself and stopped in the restorer blob: cryo closes the status
// pipe and unmaps the blob from inside the process, seals what was sealed,
// then loads every thread's registers, xsave state, signal mask and
// scheduling. Also the CPU check that guards it, made before anything exists.
#pragma once

#include <cstdint>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

// What a process's restore helper reported on the status pipe.
struct ProcessReport {
  uint64_t area = 0, area_len = 0, status_fd = 0;
  int uffd = -1;         // --lazy: the process's userfaultfd (its fd number there)
  bool adopted = false;  // cryo took it
};

// The offset of a syscall instruction in the restorer blob (remote calls
// into a process that runs the blob go through it).
Result<uint64_t> BlobSyscallInsn();

// The image's register state must fit this CPU: same xsave size, and no state
// component this CPU lacks (PTRACE_SETREGSET would refuse it half-way).
Status CheckCpu(const image::Inventory& inv);

// Final step for one process: close the status pipe and unmap the blob from
// inside it, seal what was sealed, then load every thread's registers, xsave
// state and signal mask. `syscall_off`: BlobSyscallInsn().
Status Finalize(const image::ProcessImage& proc, const ProcessReport& rep, uint64_t syscall_off);

}  // namespace cryo
