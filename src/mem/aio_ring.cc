#include "mem/aio_ring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "base/unique_fd.h"
#include "mem/aio_context.h"
#include "mem/aio_context_remote.h"

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

std::string RingVma(pid_t pid, uint64_t start, uint64_t end) {
  char range[64];
  snprintf(range, sizeof(range), "%" PRIx64 "-%" PRIx64, start, end);
  return "pid " + std::to_string(pid) + ": VMA " + range + " (/[aio]) is a Linux AIO context (io_setup(2))";
}

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

Status DescribeAioRingVma(pid_t pid, const proc::Vma& v, image::Vma* iv) {
  const std::string what = RingVma(pid, v.start, v.end);
  const std::string mem = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFd fd(::open(mem.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(what + ": opening " + mem);
  RingHeader h;
  if (::pread(fd.get(), &h, sizeof(h), static_cast<off_t>(v.start)) != static_cast<ssize_t>(sizeof(h)))
    return Status::FromErrno(what + ": reading its ring");
  if (DescribeAioRingHeader(&h, sizeof(h)).empty()) return Status::Error(what + " whose ring header cryo does not know");
  const uint64_t len = (uint64_t{h.nr} + 1) * sizeof(io_event);  // the header takes one slot's room
  if (len != v.end - v.start || !v.shared || v.prot != (PROT_READ | PROT_WRITE) || v.pgoff)
    return Status::Error(what + " whose ring is no longer mapped whole and read-write where io_setup put it, which "
                                "cryo does not restore");
  iv->set_kind(image::VMA_AIO_RING);
  iv->set_flags(MAP_SHARED);
  iv->mutable_aio_ring()->set_nr(h.nr);
  iv->mutable_aio_ring()->set_head(h.head);
  iv->mutable_aio_ring()->set_tail(h.tail);
  return Status::Ok();
}

Status ProbeAioContexts(pid_t pid, size_t threads, RemoteSyscaller& rs, image::Mm* mm) {
  image::Vma* first = nullptr;
  for (image::Vma& v : *mm->mutable_vmas())
    if (v.kind() == image::VMA_AIO_RING && !first) first = &v;
  if (!first) return Status::Ok();
  if (threads > 1)
    return Status::Error(RingVma(pid, first->start(), first->end()) + " in a process of " + std::to_string(threads) +
                         " threads, not supported yet: proving it idle needs the other threads held "
                         "(docs/architecture.md, \"AIO contexts\")");
  CRYO_ASSIGN_OR_RETURN(std::vector<int> cpus, PossibleCpus());
  CRYO_ASSIGN_OR_RETURN(auto t, RemoteAioTarget::Make(rs));
  Status st;
  for (image::Vma& v : *mm->mutable_vmas()) {
    if (v.kind() != image::VMA_AIO_RING) continue;
    const std::string what = RingVma(pid, v.start(), v.end());
    auto p = ProbeIdleAioContextInOneBatch(*t, v.start(), cpus);
    if (!p.ok()) {
      st = Status::Error(what + ", which cryo restores only idle: " + p.status().ToString());
      break;
    }
    if (p->unaccounted) {
      std::string cpu_note;
      if (!p->cpus_not_visited.empty())
        cpu_note = " (or slots held by " + std::to_string(p->cpus_not_visited.size()) + " CPUs it may not run on)";
      st = Status::Error(what + " with " + std::to_string(p->unaccounted) + " requests in flight" + cpu_note +
                         " (io_submit(2), not completed yet), whose completions a restored context would never "
                         "get: refused");
      break;
    }
    v.mutable_aio_ring()->set_head(p->ring.head);
    v.mutable_aio_ring()->set_tail(p->ring.tail);
  }
  Status closed = t->Close();
  CRYO_RETURN_IF_ERROR(st);
  return closed;
}

Status RestoreAioContexts(pid_t pid, const image::Mm& mm, RemoteSyscaller& rs) {
  bool any = false;
  for (const image::Vma& v : mm.vmas()) any |= v.kind() == image::VMA_AIO_RING;
  if (!any) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(std::vector<int> cpus, PossibleCpus());
  CRYO_ASSIGN_OR_RETURN(auto t, RemoteAioTarget::MakeUnguarded(rs));
  for (const image::Vma& v : mm.vmas()) {
    if (v.kind() != image::VMA_AIO_RING) continue;
    const std::string what = RingVma(pid, v.start(), v.end());
    auto ctx = SetupAioContextAt(*t, v.start(), v.aio_ring().nr(), cpus.size());
    if (!ctx.ok()) return ctx.status().Prefixed(what);
    AioRingState want;
    want.ctx = *ctx;
    want.nr = v.aio_ring().nr();
    want.head = v.aio_ring().head();
    want.tail = v.aio_ring().tail();
    CRYO_RETURN_IF_ERROR(ReplayAioRing(*t, *ctx, want).Prefixed(what));
  }
  return t->Close();
}

}  // namespace cryo
