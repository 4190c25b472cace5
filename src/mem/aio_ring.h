// Linux AIO contexts (io_setup(2)): the /[aio] mapping is a context's
// completion ring. They are refused at dump, by name, idle or not: whether a
// context has requests in flight is the count of its kernel object (struct
// kioctx: a per-CPU reference count), which nothing outside the kernel
// shows, and a context restored while the original had a request in flight
// would lose its completion silently (docs/architecture.md, "AIO contexts").
// The refusal says what the ring shows: its size and the completions not yet
// reaped. How the in-flight count can be probed, and a ring put back, by
// changing the ring for a while: mem/aio_context.h.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "base/status.h"
#include "proc/proc.h"

namespace cryo {

// Whether a VMA is an AIO ring (maps "/[aio] (deleted)", the file of the AIO
// pseudo file system, fs/aio.c aio_private_file).
bool IsAioRing(const proc::Vma& v);

// What the header of a ring (struct aio_ring, fs/aio.c: id, nr, head, tail,
// magic, ...) of `n` bytes says, for the refusal; "" if it is not one.
std::string DescribeAioRingHeader(const void* header, size_t n);

// The refusal of the AIO context of pid's VMA `v`, with what its ring shows
// (read through /proc/PID/mem; left out if it cannot be read).
Status RefuseAioContext(pid_t pid, const proc::Vma& v);

}  // namespace cryo
