#include "mem/aio_context.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/file_util.h"

namespace cryo {

namespace {

// The start of struct aio_ring (fs/aio.c); the slots (struct io_event) follow
// at header_length (sizeof(struct aio_ring): 32 bytes).
struct RingHeader {
  uint32_t id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
constexpr uint32_t kMagic = 0xa10a10a1;
constexpr uint64_t kHeaderBytes = sizeof(RingHeader);
static_assert(kHeaderBytes == 32 && sizeof(io_event) == 32);

// The probe's requests say so in their completion (io_event.data); their
// io_event.obj is the address of the probe's iocb in the scratch memory.
constexpr uint64_t kProbeData = 0x6372796f2d61696fULL;  // "cryo-aio"

// Scratch layout: the iocb, a CPU mask (1024 CPUs), then the array of iocb
// pointers io_submit takes (all pointing at the one iocb: each is copied).
constexpr uint64_t kMaskOff = 64, kMaskBytes = 128, kArrayOff = 256;
constexpr uint32_t kBatch = (kAioScratchBytes - kArrayOff) / sizeof(uint64_t);

std::string Ctx(uint64_t ctx) {
  char buf[48];
  snprintf(buf, sizeof(buf), "AIO context %#" PRIx64, ctx);
  return buf;
}

class Session {
 public:
  Session(AioTarget& t, uint64_t ctx) : t_(t), ctx_(ctx), iocb_(t.Scratch()) {}

  Status Init() {
    CRYO_RETURN_IF_ERROR(Header().status());
    iocb cb{};
    cb.aio_data = kProbeData;
    cb.aio_lio_opcode = IOCB_CMD_PREAD;
    cb.aio_fildes = static_cast<uint32_t>(t_.ZeroFd());
    cb.aio_buf = t_.Scratch() + kArrayOff;  // zero bytes read: never written
    cb.aio_nbytes = 0;
    CRYO_RETURN_IF_ERROR(t_.Write(iocb_, &cb, sizeof(cb)));
    std::vector<uint64_t> ptrs(kBatch, iocb_);
    return t_.Write(t_.Scratch() + kArrayOff, ptrs.data(), ptrs.size() * sizeof(uint64_t));
  }

  uint32_t nr() const { return nr_; }

  Result<RingHeader> Header() {
    RingHeader h;
    CRYO_RETURN_IF_ERROR(t_.Read(ctx_, &h, sizeof(h)));
    if (h.magic != kMagic || h.nr == 0 || h.head >= h.nr || h.tail >= h.nr || (nr_ && h.nr != nr_))
      return Status::Error(Ctx(ctx_) + ": the ring's header is not that of an AIO ring");
    nr_ = h.nr;
    return h;
  }

  Status SetHead(uint32_t head) {
    return t_.Write(ctx_ + offsetof(RingHeader, head), &head, sizeof(head));
  }

  uint64_t Slot(uint64_t i) const { return ctx_ + kHeaderBytes + (i % nr_) * sizeof(io_event); }

  Result<std::vector<io_event>> Events(uint32_t from, uint32_t to) {
    std::vector<io_event> ev((to + nr_ - from) % nr_);
    for (size_t i = 0; i < ev.size(); ++i) CRYO_RETURN_IF_ERROR(t_.Read(Slot(from + i), &ev[i], sizeof(io_event)));
    return ev;
  }

  bool Ours(const io_event& e) const { return e.data == kProbeData && e.obj == iocb_; }

  // Submits up to `n` requests that complete at once; fewer when io_submit
  // says EAGAIN (no slot left to this CPU, fs/aio.c aio_get_req).
  Result<uint32_t> Submit(uint32_t n) {
    uint32_t done = 0;
    while (done < n) {
      const uint32_t ask = std::min(n - done, kBatch);
      CRYO_ASSIGN_OR_RETURN(long r, t_.Syscall(SYS_io_submit, ctx_, ask, t_.Scratch() + kArrayOff));
      if (r == -EAGAIN) break;
      if (r <= 0) return Status::Errno(static_cast<int>(-r), Ctx(ctx_) + ": io_submit of a zero-byte read of /dev/zero");
      done += static_cast<uint32_t>(r);
    }
    return done;
  }

  // Reaps what the ring holds by moving its head to its tail, as user space
  // reaping from the ring does; the completions not the probe's are appended
  // to `kept`. A completion arriving meanwhile lands after that tail.
  Status ReapAll(std::vector<io_event>* kept) {
    CRYO_ASSIGN_OR_RETURN(RingHeader h, Header());
    CRYO_ASSIGN_OR_RETURN(std::vector<io_event> ev, Events(h.head, h.tail));
    for (const io_event& e : ev)
      if (!Ours(e)) kept->push_back(e);
    return SetHead(h.tail);
  }

  // Moves the kernel's tail to `want_tail` (later by what completes
  // meanwhile) with `keep` as the completions not yet reaped, then those
  // that came in. The ring's content is reaped first (into `keep`'s end).
  Status Reposition(uint32_t want_tail, std::vector<io_event> keep) {
    std::vector<io_event> arrived;
    CRYO_RETURN_IF_ERROR(ReapAll(&arrived));
    CRYO_ASSIGN_OR_RETURN(RingHeader h, Header());
    uint64_t c = (want_tail + nr_ - h.tail) % nr_;
    if (c < keep.size() + arrived.size()) c += nr_;
    uint64_t left = c - keep.size() - arrived.size();
    while (left > 0) {
      CRYO_ASSIGN_OR_RETURN(uint32_t n, Submit(static_cast<uint32_t>(std::min<uint64_t>(left, 4 * kBatch))));
      if (n == 0) return Status::Error(Ctx(ctx_) + ": no free slot to move the ring's tail (io_submit: EAGAIN)");
      left -= n;
      CRYO_RETURN_IF_ERROR(ReapAll(&arrived));
    }
    keep.insert(keep.end(), arrived.begin(), arrived.end());
    CRYO_ASSIGN_OR_RETURN(h, Header());
    const uint32_t start = h.head;
    CRYO_ASSIGN_OR_RETURN(uint32_t n, Submit(static_cast<uint32_t>(keep.size())));
    if (n != keep.size())
      return Status::Error(Ctx(ctx_) + ": " + std::to_string(keep.size() - n) +
                           " completions could not be put back (io_submit: EAGAIN)");
    CRYO_ASSIGN_OR_RETURN(h, Header());
    CRYO_ASSIGN_OR_RETURN(std::vector<io_event> region, Events(start, h.tail));
    std::vector<io_event> put = keep;
    for (const io_event& e : region)
      if (!Ours(e)) put.push_back(e);  // completed while the probe's went in: after them
    if (put.size() != region.size()) return Status::Error(Ctx(ctx_) + ": the ring changed under the probe");
    for (size_t i = 0; i < put.size(); ++i) CRYO_RETURN_IF_ERROR(t_.Write(Slot(start + i), &put[i], sizeof(io_event)));
    return SetHead(start);
  }

  // The thread's CPU mask, saved and put back.
  Status SaveAffinity() {
    CRYO_ASSIGN_OR_RETURN(long r, t_.Syscall(SYS_sched_getaffinity, 0, kMaskBytes, t_.Scratch() + kMaskOff));
    if (r < 0) return Status::Errno(static_cast<int>(-r), "sched_getaffinity");
    saved_mask_.assign(kMaskBytes, 0);
    return t_.Read(t_.Scratch() + kMaskOff, saved_mask_.data(), static_cast<size_t>(r));
  }
  Status RestoreAffinity() { return SetMask(saved_mask_); }
  const std::vector<uint8_t>& saved_mask() const { return saved_mask_; }
  int FirstSavedCpu() const {
    for (size_t i = 0; i < saved_mask_.size() * 8; ++i)
      if (saved_mask_[i / 8] & (1u << (i % 8))) return static_cast<int>(i);
    return -1;
  }
  // -errno of sched_setaffinity (EINVAL: a CPU the thread may not run on).
  Result<long> PinTo(int cpu) {
    if (cpu < 0 || static_cast<uint64_t>(cpu) >= kMaskBytes * 8) return static_cast<long>(-EINVAL);
    std::vector<uint8_t> mask(kMaskBytes, 0);
    mask[cpu / 8] = static_cast<uint8_t>(1u << (cpu % 8));
    CRYO_RETURN_IF_ERROR(t_.Write(t_.Scratch() + kMaskOff, mask.data(), mask.size()));
    return t_.Syscall(SYS_sched_setaffinity, 0, kMaskBytes, t_.Scratch() + kMaskOff);
  }

 private:
  Status SetMask(const std::vector<uint8_t>& mask) {
    if (mask.empty()) return Status::Ok();
    CRYO_RETURN_IF_ERROR(t_.Write(t_.Scratch() + kMaskOff, mask.data(), mask.size()));
    CRYO_ASSIGN_OR_RETURN(long r, t_.Syscall(SYS_sched_setaffinity, 0, kMaskBytes, t_.Scratch() + kMaskOff));
    if (r < 0) return Status::Errno(static_cast<int>(-r), "sched_setaffinity (putting the thread's CPUs back)");
    return Status::Ok();
  }

  AioTarget& t_;
  uint64_t ctx_;
  uint64_t iocb_;
  uint32_t nr_ = 0;
  std::vector<uint8_t> saved_mask_;
};

}  // namespace

Result<AioRingState> ReadAioRing(AioTarget& t, uint64_t ctx) {
  Session s(t, ctx);
  CRYO_ASSIGN_OR_RETURN(RingHeader h, s.Header());
  AioRingState st;
  st.ctx = ctx;
  st.nr = h.nr;
  st.head = h.head;
  st.tail = h.tail;
  CRYO_ASSIGN_OR_RETURN(st.unreaped, s.Events(h.head, h.tail));
  return st;
}

Status ReplayAioRing(AioTarget& t, uint64_t ctx, const AioRingState& want) {
  Session s(t, ctx);
  CRYO_RETURN_IF_ERROR(s.Init());
  CRYO_ASSIGN_OR_RETURN(RingHeader h, s.Header());
  if (h.nr != want.nr)
    return Status::Error(Ctx(ctx) + ": a ring of " + std::to_string(h.nr) + " slots, not " + std::to_string(want.nr));
  if (h.head != h.tail) return Status::Error(Ctx(ctx) + ": not a fresh context (completions in its ring)");
  if (want.head >= want.nr || want.tail >= want.nr || want.unreaped.size() != (want.tail + want.nr - want.head) % want.nr)
    return Status::Error(Ctx(ctx) + ": the saved ring's head, tail and completions do not agree");
  // One CPU throughout: a slot given back goes to this CPU's cache and is
  // taken from there (put_reqs_available), never stranded on another.
  CRYO_RETURN_IF_ERROR(s.SaveAffinity());
  CRYO_ASSIGN_OR_RETURN(long pin, s.PinTo(s.FirstSavedCpu()));
  if (pin < 0) return Status::Errno(static_cast<int>(-pin), Ctx(ctx) + ": sched_setaffinity");
  Status st = s.Reposition(want.tail, want.unreaped);
  Status back = s.RestoreAffinity();
  CRYO_RETURN_IF_ERROR(st);
  CRYO_RETURN_IF_ERROR(back);
  CRYO_ASSIGN_OR_RETURN(h, s.Header());
  if (h.head != want.head || h.tail != want.tail)
    return Status::Error(Ctx(ctx) + ": a request completed while its ring was put back (a fresh context has none)");
  return Status::Ok();
}

Result<AioProbe> ProbeAioContext(AioTarget& t, uint64_t ctx, const std::vector<int>& possible_cpus) {
  Session s(t, ctx);
  CRYO_RETURN_IF_ERROR(s.Init());
  AioProbe p;
  CRYO_ASSIGN_OR_RETURN(p.ring, ReadAioRing(t, ctx));
  const uint32_t nr = s.nr();
  CRYO_RETURN_IF_ERROR(s.SaveAffinity());
  Status st;
  int last = -1;
  for (int cpu : possible_cpus) {
    auto pin = s.PinTo(cpu);
    if (!pin.ok()) {
      st = pin.status();
      break;
    }
    if (*pin < 0) {
      p.cpus_not_visited.push_back(cpu);
      continue;
    }
    last = cpu;
    auto n = s.Submit(nr);
    if (!n.ok()) {
      st = n.status();
      break;
    }
    p.drained += *n;
  }
  // The ring now holds the unreaped completions, the probe's, and any that
  // came in: put back all but the probe's, at the same tail if none came in.
  std::vector<io_event> kept;
  if (st.ok()) st = s.ReapAll(&kept);
  const uint32_t came_in = st.ok() ? static_cast<uint32_t>(kept.size() - p.ring.unreaped.size()) : 0;
  if (st.ok() && last < 0) st = Status::Error(Ctx(ctx) + ": the thread may run on none of the possible CPUs");
  if (st.ok()) st = s.Reposition((p.ring.tail + came_in) % nr, kept);
  Status back = s.RestoreAffinity();
  CRYO_RETURN_IF_ERROR(st);
  CRYO_RETURN_IF_ERROR(back);
  const uint64_t cpus = std::max<size_t>(possible_cpus.size(), 1);
  const uint32_t batch = std::max<uint32_t>(1, static_cast<uint32_t>((nr - 1) / (cpus * 4)));
  const uint64_t accounted = p.ring.unreaped.size() + p.drained + (nr - 1) % batch;
  if (accounted > nr - 1)
    return Status::Error(Ctx(ctx) + ": the probe found more free slots than the ring has (" + std::to_string(accounted) +
                         " of " + std::to_string(nr - 1) + ")");
  p.unaccounted = static_cast<uint32_t>(nr - 1 - accounted);
  CRYO_ASSIGN_OR_RETURN(p.ring, ReadAioRing(t, ctx));
  return p;
}

Result<AioProbe> ProbeIdleAioContextInOneBatch(AioTarget& t, uint64_t ctx, const std::vector<int>& possible_cpus) {
  Session s(t, ctx);
  CRYO_RETURN_IF_ERROR(s.Init());
  AioProbe p;
  CRYO_ASSIGN_OR_RETURN(p.ring, ReadAioRing(t, ctx));
  const uint32_t nr = s.nr();
  if (!p.ring.unreaped.empty())
    return Status::Error(Ctx(ctx) + ": " + std::to_string(p.ring.unreaped.size()) +
                         " completions not yet reaped (io_getevents), which the probe in one batch cannot keep");
  CRYO_RETURN_IF_ERROR(s.SaveAffinity());
  // Scratch: the iocb and its pointers (Session), then a zero timespec, the
  // saved mask, one mask per CPU, and room for every event of the ring.
  const uint64_t base = t.Scratch();
  const uint64_t ts = base + kAioScratchBytes, saved = ts + 16, masks = saved + kMaskBytes;
  const uint64_t events = masks + kMaskBytes * possible_cpus.size();
  if (events + uint64_t{nr} * sizeof(io_event) > base + t.ScratchBytes())
    return Status::Error(Ctx(ctx) + ": a ring of " + std::to_string(nr) + " slots is too large for the scratch memory");
  const timespec zero{};
  CRYO_RETURN_IF_ERROR(t.Write(ts, &zero, sizeof(zero)));
  CRYO_RETURN_IF_ERROR(t.Write(saved, s.saved_mask().data(), kMaskBytes));
  std::vector<AioTarget::Call> calls;
  const uint32_t submits = (nr - 1 + kBatch - 1) / kBatch;  // enough to take every slot
  for (size_t i = 0; i < possible_cpus.size(); ++i) {
    const int cpu = possible_cpus[i];
    if (cpu < 0 || static_cast<uint64_t>(cpu) >= kMaskBytes * 8) return Status::Error("CPU " + std::to_string(cpu) + " out of range");
    std::vector<uint8_t> mask(kMaskBytes, 0);
    mask[cpu / 8] = static_cast<uint8_t>(1u << (cpu % 8));
    CRYO_RETURN_IF_ERROR(t.Write(masks + kMaskBytes * i, mask.data(), mask.size()));
    calls.push_back({SYS_sched_setaffinity, {0, kMaskBytes, masks + kMaskBytes * i}});
    for (uint32_t j = 0; j < submits; ++j) calls.push_back({SYS_io_submit, {ctx, kBatch, base + kArrayOff}});
  }
  calls.push_back({SYS_sched_setaffinity, {0, kMaskBytes, saved}});
  calls.push_back({SYS_io_getevents, {ctx, 0, nr, events, ts}});
  CRYO_ASSIGN_OR_RETURN(std::vector<long> r, t.Batch(calls));
  if (r.size() != calls.size()) return Status::Error(Ctx(ctx) + ": the probe's batch ran " + std::to_string(r.size()) + " calls of " + std::to_string(calls.size()));
  size_t k = 0;
  Status st;
  for (size_t i = 0; i < possible_cpus.size(); ++i) {
    if (r[k++] < 0) p.cpus_not_visited.push_back(possible_cpus[i]);
    for (uint32_t j = 0; j < submits; ++j, ++k) {
      if (r[k] > 0) p.drained += static_cast<uint32_t>(r[k]);
      else if (r[k] != -EAGAIN && st.ok()) st = Status::Errno(static_cast<int>(-r[k]), Ctx(ctx) + ": io_submit of the probe");
    }
  }
  if (r[k] < 0 && st.ok()) st = Status::Errno(static_cast<int>(-r[k]), "sched_setaffinity (putting the thread's CPUs back)");
  const long reaped = r[k + 1];
  // The completions that are not the probe's: put back, in flight at the start.
  std::vector<io_event> kept;
  if (reaped < 0) {
    st = Status::Errno(static_cast<int>(-reaped), Ctx(ctx) + ": io_getevents of the probe's completions");
    Status back = s.ReapAll(&kept);  // cryo does what the batch did not
    if (!back.ok()) return back;
  } else {
    std::vector<io_event> ev(static_cast<size_t>(reaped));
    if (!ev.empty()) CRYO_RETURN_IF_ERROR(t.Read(events, ev.data(), ev.size() * sizeof(io_event)));
    uint32_t ours = 0;
    for (const io_event& e : ev)
      if (s.Ours(e)) ++ours;
      else kept.push_back(e);
    // Not all reaped: a completion of the probe left in the ring (cannot be).
    if (ours != p.drained) {
      Status back = s.ReapAll(&kept);
      if (!back.ok()) return back;
      if (st.ok()) st = Status::Error(Ctx(ctx) + ": the probe reaped " + std::to_string(ours) + " of its " + std::to_string(p.drained) + " completions");
    }
  }
  if (!kept.empty()) {
    CRYO_ASSIGN_OR_RETURN(RingHeader h, s.Header());
    Status back = s.Reposition((h.tail + kept.size()) % nr, kept);
    if (!back.ok()) return back;
  }
  CRYO_RETURN_IF_ERROR(st);
  const uint64_t cpus = std::max<size_t>(possible_cpus.size(), 1);
  const uint32_t batch = std::max<uint32_t>(1, static_cast<uint32_t>((nr - 1) / (cpus * 4)));
  const uint64_t accounted = uint64_t{p.drained} + (nr - 1) % batch;
  if (accounted > nr - 1)
    return Status::Error(Ctx(ctx) + ": the probe found more free slots than the ring has");
  p.unaccounted = static_cast<uint32_t>(nr - 1 - accounted);
  CRYO_ASSIGN_OR_RETURN(p.ring, ReadAioRing(t, ctx));
  return p;
}

Result<uint32_t> AioSetupArgFor(uint32_t nr, size_t possible_cpus) {
  constexpr uint64_t kPerPage = 4096 / sizeof(io_event);  // slots per page; the header takes one
  const uint64_t pages = (kHeaderBytes + uint64_t{nr} * sizeof(io_event) + 4095) / 4096;
  if (nr == 0 || pages * kPerPage - 1 != nr)
    return Status::Error("a ring of " + std::to_string(nr) + " slots is not one io_setup makes (whole pages)");
  // events(n) = max(n, 4c) * 2 + 2 must fill `pages`: more than the pages
  // before hold, at most what they hold.
  const uint64_t min_events = (pages - 1) * kPerPage;
  const uint64_t n = std::max<uint64_t>(1, min_events > 2 ? (min_events - 2 + 1) / 2 : 1);
  const uint64_t events = std::max<uint64_t>(n, 4 * possible_cpus) * 2 + 2;
  if (events > nr)
    return Status::Error("a ring of " + std::to_string(nr) + " slots is smaller than any io_setup makes on " +
                         std::to_string(possible_cpus) + " CPUs");
  return static_cast<uint32_t>(n);
}

Result<uint64_t> SetupAioContextAt(AioTarget& t, uint64_t addr, uint32_t nr, size_t possible_cpus) {
  CRYO_ASSIGN_OR_RETURN(uint32_t n, AioSetupArgFor(nr, possible_cpus));
  const uint64_t idp = t.Scratch() + kMaskOff;  // io_setup wants *ctxp == 0 going in
  const uint64_t zero = 0;
  CRYO_RETURN_IF_ERROR(t.Write(idp, &zero, sizeof(zero)));
  CRYO_ASSIGN_OR_RETURN(long r, t.Syscall(SYS_io_setup, n, idp));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "io_setup(" + std::to_string(n) + ")");
  uint64_t ctx = 0;
  CRYO_RETURN_IF_ERROR(t.Read(idp, &ctx, sizeof(ctx)));
  Session s(t, ctx);
  auto h = s.Header();
  Status st = h.ok() ? Status::Ok() : h.status();
  if (st.ok() && h->nr != nr)
    st = Status::Error(Ctx(ctx) + ": io_setup(" + std::to_string(n) + ") made " + std::to_string(h->nr) +
                       " slots, not " + std::to_string(nr));
  const uint64_t len = (kHeaderBytes + uint64_t{nr} * sizeof(io_event) + 4095) & ~uint64_t{4095};
  if (st.ok() && ctx != addr) {
    CRYO_ASSIGN_OR_RETURN(r, t.Syscall(SYS_mremap, ctx, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr));
    if (r < 0) st = Status::Errno(static_cast<int>(-r), Ctx(ctx) + ": mremap of its ring");
  }
  if (!st.ok()) {
    (void)t.Syscall(SYS_io_destroy, ctx);  // best effort: the error says what failed
    return st;
  }
  return addr;
}

Result<std::vector<int>> PossibleCpus() {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/sys/devices/system/cpu/possible"));
  std::vector<int> cpus;
  size_t i = 0;
  auto number = [&](int* v) {
    if (i >= text.size() || text[i] < '0' || text[i] > '9') return false;
    *v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') *v = *v * 10 + (text[i++] - '0');
    return true;
  };
  while (i < text.size() && text[i] != '\n') {
    int a, b;
    if (!number(&a)) return Status::Error("/sys/devices/system/cpu/possible: cannot parse " + text);
    b = a;
    if (i < text.size() && text[i] == '-') {
      ++i;
      if (!number(&b) || b < a) return Status::Error("/sys/devices/system/cpu/possible: cannot parse " + text);
    }
    for (int c = a; c <= b; ++c) cpus.push_back(c);
    if (i < text.size() && text[i] == ',') ++i;
  }
  if (cpus.empty()) return Status::Error("/sys/devices/system/cpu/possible: no CPU");
  return cpus;
}

LocalAioTarget::LocalAioTarget() {
  scratch_ = std::aligned_alloc(4096, kLocalScratchBytes);
  zero_fd_ = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
}

LocalAioTarget::~LocalAioTarget() {
  std::free(scratch_);
  if (zero_fd_ >= 0) ::close(zero_fd_);
}

Result<long> LocalAioTarget::Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
  const long r = ::syscall(nr, a1, a2, a3, a4, a5);
  return r == -1 ? -static_cast<long>(errno) : r;
}

Result<std::vector<long>> LocalAioTarget::Batch(const std::vector<Call>& calls) {
  std::vector<long> out;
  for (const Call& c : calls) {
    CRYO_ASSIGN_OR_RETURN(long r, Syscall(c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4]));
    out.push_back(r);
  }
  return out;
}

Status LocalAioTarget::Read(uint64_t addr, void* buf, size_t n) {
  std::memcpy(buf, reinterpret_cast<const void*>(addr), n);
  return Status::Ok();
}

Status LocalAioTarget::Write(uint64_t addr, const void* buf, size_t n) {
  std::memcpy(reinterpret_cast<void*>(addr), buf, n);
  return Status::Ok();
}

}  // namespace cryo
