// Linux AIO contexts (io_setup(2)): the /[aio] mapping is a context's
// completion ring. A context is restored when the dump proves it idle: no
// request in flight and no completion unreaped, by the probe in one batch of
// mem/aio_context.h, which the task finishes by itself should cryo die; its
// ring is recorded by size and position (VMA_AIO_RING, feature
// "aio-context"). At restore the context is made again with as many slots,
// its ring moved to the old address (the aio_context_t the program holds)
// and brought to the same position (docs/architecture.md, "AIO contexts").
// Refused by name: a context with requests in flight or completions not
// reaped, in a process of several threads (the probe would need them held),
// or too large for the probe's scratch memory.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

class RemoteSyscaller;

// Whether a VMA is an AIO ring (maps "/[aio] (deleted)", the file of the AIO
// pseudo file system, fs/aio.c aio_private_file).
bool IsAioRing(const proc::Vma& v);

// What the header of a ring (struct aio_ring, fs/aio.c: id, nr, head, tail,
// magic, ...) of `n` bytes says, for refusals; "" if it is not one.
std::string DescribeAioRingHeader(const void* header, size_t n);

// Describes pid's ring VMA `v` into `iv` (kind VMA_AIO_RING, its slots),
// read through /proc/PID/mem; refused if it is not readable, not a ring, or
// not mapped read-write as io_setup maps it.
Status DescribeAioRingVma(pid_t pid, const proc::Vma& v, image::Vma* iv);

// At dump, with the process's calls running (`rs`, its scratch memory
// mapped): proves each ring of `mm` idle and records its position; refuses
// by name what is not. `threads`: the process's thread count.
Status ProbeAioContexts(pid_t pid, size_t threads, RemoteSyscaller& rs, image::Mm* mm);

// At restore, in the restored process (`rs` unguarded), once its memory is
// in place: each context made again at its ring's address and position.
Status RestoreAioContexts(pid_t pid, const image::Mm& mm, RemoteSyscaller& rs);

}  // namespace cryo
