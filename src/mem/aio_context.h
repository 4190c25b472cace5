// The two kernel techniques an AIO context's checkpoint needs (issue 9),
// which docs/architecture.md ("AIO contexts") once held impossible. Used by
// the dump and the restore of AIO contexts (aio_ring.h).
//
// 1. Putting a ring back (ReplayAioRing). The kernel writes completion N
//    into slot `ctx->tail`, its own copy of the ring's tail (fs/aio.c
//    aio_complete), which user space cannot set; but it trusts the ring's
//    head from user memory (aio_read_events_ring, refill_reqs_available).
//    A zero-byte IOCB_CMD_PREAD of /dev/zero completes inside io_submit
//    (aio_read -> aio_rw_done -> aio_complete_rw), so N such requests move
//    ctx->tail by N. Moving it to the saved tail, leaving the last of them
//    unreaped, writing the saved events over theirs and the saved head into
//    the ring gives the context exactly the state it was dumped with: the
//    kernel's accounting (completed_events, reqs_available) is that of
//    completions not yet reaped, which these are.
// 2. Proving a context idle (ProbeAioContext). Every request holds one of
//    the ring's nr - 1 slots (ctx->reqs_available) from io_submit until its
//    completion is reaped. Slots are handed out in batches of req_batch =
//    (nr - 1) / (4 * possible CPUs) through a per-CPU cache
//    (__get_reqs_available), and the shared counter moves only in whole
//    batches (put_reqs_available), so once every CPU's cache is drained the
//    counter holds (nr - 1) % req_batch. Draining is submitting requests
//    that complete at once, with the thread pinned to each possible CPU in
//    turn, until io_submit says EAGAIN (after its own refill from the ring's
//    head, user_refill_reqs_available). Then requests in flight = nr - 1 -
//    unreaped completions - drained - (nr - 1) % req_batch. A CPU the thread
//    cannot run on may hold cached slots: they count as "in flight" (the
//    probe errs toward a refusal, never toward a loss). A request that
//    completes during the probe shows up in the ring among the probe's own
//    completions (io_event.obj is not the probe's iocb) and is kept. The
//    probe then puts the ring back with (1): the same unreaped completions
//    (plus any that came in), at the same head and tail when none came in.
//    Done by cryo call by call, that leaves the original's ring changed
//    should cryo die meanwhile; ProbeIdleAioContextInOneBatch is the same
//    count as one batch the task finishes by itself, for a context with no
//    unreaped completion (docs/architecture.md, "AIO contexts").
#pragma once

#include <linux/aio_abi.h>

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace cryo {

// Where the context lives: the calling process (LocalAioTarget), or a
// stopped task driven by remote system calls and /proc/PID/mem.
class AioTarget {
 public:
  virtual ~AioTarget() = default;
  // A system call made by the target thread: the raw result (-errno).
  virtual Result<long> Syscall(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                               uint64_t a5 = 0) = 0;
  virtual Status Read(uint64_t addr, void* buf, size_t n) = 0;
  virtual Status Write(uint64_t addr, const void* buf, size_t n) = 0;
  // Writable memory in the target, which its program does not use (at
  // least kAioScratchBytes), and an fd there for zero-byte reads.
  virtual uint64_t Scratch() = 0;
  virtual size_t ScratchBytes() = 0;
  virtual int ZeroFd() = 0;
  // Runs `calls` in order; the raw results. Remote: one batch the task
  // finishes by itself should cryo die (an error if it cannot run so).
  struct Call {
    long nr;
    uint64_t a[5];
  };
  virtual Result<std::vector<long>> Batch(const std::vector<Call>& calls) = 0;
};

inline constexpr size_t kAioScratchBytes = 4096;

// What the ring of a context shows (struct aio_ring, fs/aio.c).
struct AioRingState {
  uint64_t ctx = 0;   // the aio_context_t: the ring's address
  uint32_t nr = 0;    // slots (ctx->nr_events)
  uint32_t head = 0;  // next slot user space reaps
  uint32_t tail = 0;  // next slot the kernel completes into
  std::vector<io_event> unreaped;  // slots head..tail-1
};

Result<AioRingState> ReadAioRing(AioTarget& t, uint64_t ctx);

// Brings the context `ctx` (as many slots as `want.nr`, no request in
// flight) to `want`'s head, tail and unreaped completions (1 above).
Status ReplayAioRing(AioTarget& t, uint64_t ctx, const AioRingState& want);

struct AioProbe {
  AioRingState ring;          // as found (with what completed during the probe)
  uint32_t drained = 0;       // free slots the probe took
  uint32_t unaccounted = 0;   // requests in flight, or slots of a CPU it could not run on
  std::vector<int> cpus_not_visited;
};

// Counts the requests in flight of `ctx` and puts its ring back (2 above).
// The calling thread's CPU affinity is changed and put back. `possible_cpus`:
// the CPUs of /sys/devices/system/cpu/possible.
Result<AioProbe> ProbeAioContext(AioTarget& t, uint64_t ctx, const std::vector<int>& possible_cpus);

// ProbeAioContext as one batch of calls (AioTarget::Batch) which leaves
// the ring as it found it, but for the head and tail both moved by what the
// probe drained: per possible CPU sched_setaffinity and io_submits, the
// thread's CPUs put back, then io_getevents with min_nr 0 and no wait, which
// reaps the probe's completions (all in the ring once io_submit returns).
// Should cryo die, the task ends the batch by itself. For a context with no
// unreaped completion (else an error naming how many). A completion the
// batch reaped that is not the probe's (a request that completed meanwhile)
// is put back by ProbeAioContext's means (and counted in flight). The
// caller keeps the process's other threads from reaping meanwhile (held, or
// none).
Result<AioProbe> ProbeIdleAioContextInOneBatch(AioTarget& t, uint64_t ctx, const std::vector<int>& possible_cpus);

// The io_setup(2) argument that makes a ring of `nr` slots on a machine of
// `possible_cpus` CPUs, the smallest (it is what counts against
// /proc/sys/fs/aio-max-nr): ioctx_alloc takes max(n, 4 * CPUs) * 2 + 2
// events and aio_setup_ring rounds that up to whole pages. An error if no
// argument does (more CPUs here than where the ring was made).
Result<uint32_t> AioSetupArgFor(uint32_t nr, size_t possible_cpus);

// Makes a context whose ring has `nr` slots and moves its ring to `addr`
// (mremap(2), which aio_ring_mremap follows: the context's id becomes
// `addr`), replacing whatever is mapped there, like MAP_FIXED. Returns the
// context's id: `addr`.
Result<uint64_t> SetupAioContextAt(AioTarget& t, uint64_t addr, uint32_t nr, size_t possible_cpus);

// The CPUs of /sys/devices/system/cpu/possible ("0-3,8").
Result<std::vector<int>> PossibleCpus();

// The target is the calling thread (tests; a restore helper).
class LocalAioTarget : public AioTarget {
 public:
  LocalAioTarget();
  ~LocalAioTarget() override;
  Result<long> Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) override;
  Status Read(uint64_t addr, void* buf, size_t n) override;
  Status Write(uint64_t addr, const void* buf, size_t n) override;
  uint64_t Scratch() override { return reinterpret_cast<uint64_t>(scratch_); }
  size_t ScratchBytes() override { return kLocalScratchBytes; }
  int ZeroFd() override { return zero_fd_; }
  Result<std::vector<long>> Batch(const std::vector<Call>& calls) override;
  static constexpr size_t kLocalScratchBytes = 64 << 10;
  bool ok() const { return scratch_ && zero_fd_ >= 0; }

 private:
  void* scratch_ = nullptr;
  int zero_fd_ = -1;
};

}  // namespace cryo
