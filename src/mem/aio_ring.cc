#include "mem/aio_ring.h"

#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "base/unique_fd.h"

namespace cryo {

namespace {

// The start of struct aio_ring (fs/aio.c), which the ring's first page holds.
struct RingHeader {
  uint32_t id;     // the context's index in the mm's table
  uint32_t nr;     // events the ring holds
  uint32_t head;   // next event user space reaps
  uint32_t tail;   // next event the kernel completes into
  uint32_t magic;  // AIO_RING_MAGIC
};
constexpr uint32_t kAioRingMagic = 0xa10a10a1;

}  // namespace

bool IsAioRing(const proc::Vma& v) { return v.deleted && v.name == "/[aio]"; }

std::string DescribeAioRingHeader(const void* header, size_t n) {
  RingHeader h;
  if (n < sizeof(h)) return "";
  std::memcpy(&h, header, sizeof(h));
  if (h.magic != kAioRingMagic || h.nr == 0 || h.head >= h.nr || h.tail >= h.nr) return "";
  const uint32_t unreaped = (h.tail + h.nr - h.head) % h.nr;
  return "a ring of " + std::to_string(h.nr) + " events, " +
         (unreaped ? std::to_string(unreaped) + " completions not yet reaped (io_getevents)"
                   : std::string("no completion waiting to be reaped"));
}

Status RefuseAioContext(pid_t pid, const proc::Vma& v) {
  char range[64];
  snprintf(range, sizeof(range), "%" PRIx64 "-%" PRIx64, v.start, v.end);
  std::string ring;
  const std::string mem = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFd fd(::open(mem.c_str(), O_RDONLY | O_CLOEXEC));
  RingHeader h;
  if (fd.valid() && ::pread(fd.get(), &h, sizeof(h), static_cast<off_t>(v.start)) == static_cast<ssize_t>(sizeof(h)))
    ring = DescribeAioRingHeader(&h, sizeof(h));
  return Status::Error("pid " + std::to_string(pid) + ": VMA " + range + " (/[aio]) is a Linux AIO context (io_setup(2))" +
                       (ring.empty() ? "" : " with " + ring) +
                       ", which cryo does not restore: whether requests are still in flight is known only to the "
                       "kernel, so even an idle context is refused rather than risk losing a completion (destroy it "
                       "with io_destroy(2) before the dump)");
}

}  // namespace cryo
