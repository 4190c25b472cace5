// The post-copy side of the lazy server (mem/lazy_server.h): the pages of
// runs marked remote come from the migration source (RemotePageSource),
// asked for in pieces, several requests in flight, answered in order.
//
//  - a fault asks at once for the 64 KiB around the faulting page (not the
//    whole run: the faulting thread waits for its own pages only), behind at
//    most the prefetch window already on the link, then for the 256 KiB after
//    them (read-ahead; a fault into those asks for the next pages, twice as
//    many each time, up to 4 MiB);
//  - the prefetch keeps 1 MiB asked for, in 512 KiB requests, going on from the last fault's pages (read-ahead: a program
//    touching its memory in order finds the next pages there or on the way),
//    then round to the lowest address;
//  - pages asked for move from `pending` to `inflight` (the events follow
//    them there: munmap or MADV_DONTNEED drops them, mremap moves them); a
//    fault in `inflight` waits for the answer, whose UFFDIO_COPY wakes it;
//  - an answer goes to every address space of its image process that still
//    misses those pages (a child forked meanwhile has them missing too),
//    wherever they are now.
// A source that fails or goes silent is final: the tree is killed (never a
// page of zeros).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "base/clock.h"
#include "mem/lazy_server.h"

namespace cryo {

using lazy::CopyPiece;
using lazy::CopyResult;
using lazy::EndOf;
using lazy::Lookup;
using lazy::Pieces;
using lazy::SplitAt;

namespace {

constexpr uint64_t kPage = lazy::kPage;
constexpr uint64_t kFaultWindow = 64 << 10;
constexpr uint64_t kReadAhead = 256 << 10;      // after a fault; doubled while the program goes in order
constexpr uint64_t kMaxReadAhead = 4 << 20;     // (kMaxPageReq)
constexpr uint64_t kPrefetchChunk = 512 << 10;
constexpr uint64_t kPrefetchWindow = 1 << 20;
constexpr double kChangingSeconds = 30;  // as lazy_server.cc

}  // namespace

// Moves [lo, hi) (inside one pending piece) to inflight and asks for it.
Status LazyServer::RequestRemote(Space& sp, uint64_t lo, uint64_t hi, bool fault) {
  SplitAt(sp.pending, lo);
  SplitAt(sp.pending, hi);
  auto it = sp.pending.find(lo);
  if (it == sp.pending.end() || EndOf(*it) != hi) return Status::Error("internal: no missing piece at " + std::to_string(lo));
  const lazy::Piece p = it->second;
  const Run& r = (*sp.runs)[p.run];
  sp.pending.erase(it);
  sp.inflight.emplace(lo, p);
  // The tag says what asked (for the counts): faults odd.
  const uint64_t tag = (next_tag_++ << 1) | (fault ? 1 : 0);
  return remote_->Request(sp.pid, r.vaddr + p.first * kPage, hi - lo, tag);
}

// The pages after a fault's own, asked right behind them (a program going
// through its memory in order finds them there or on the way).
Status LazyServer::ReadAhead(Space& sp, uint64_t from) {
  auto it = Lookup(sp.pending, from);
  if (it == sp.pending.end() || !(*sp.runs)[it->second.run].remote) return Status::Ok();
  const uint64_t hi = std::min(EndOf(*it), from + sp.ra_size);
  sp.ra_mark = from;
  sp.readahead = hi;
  return RequestRemote(sp, from, hi, false);
}

Status LazyServer::ServeRemoteFault(Space& sp, uint64_t addr) {
  if (Lookup(sp.inflight, addr) != sp.inflight.end()) {
    // On its way. Into the last read-ahead: the program goes in order, the
    // next pages are asked for now, twice as many as last time.
    if (sp.ra_mark && addr >= sp.ra_mark && addr < sp.readahead) {
      sp.ra_size = std::min(2 * sp.ra_size, kMaxReadAhead);
      return ReadAhead(sp, sp.readahead);
    }
    return Status::Ok();
  }
  auto it = Lookup(sp.pending, addr);
  if (it == sp.pending.end()) return Status::Ok();
  const uint64_t lo = std::max(it->first, addr & ~(kFaultWindow - 1));
  const uint64_t hi = std::min(EndOf(*it), lo + kFaultWindow);
  CRYO_RETURN_IF_ERROR(RequestRemote(sp, lo, hi, true));
  sp.ra_size = kReadAhead;
  return ReadAhead(sp, hi);
}

Status LazyServer::PrefetchRemote() {
  while (remote_->Outstanding() < kPrefetchWindow) {
    Space* sp = nullptr;
    for (auto& s : spaces_)
      if (!s->gone && !s->pending.empty()) {
        sp = s.get();
        break;
      }
    if (!sp) return Status::Ok();
    auto it = Lookup(sp->pending, sp->readahead);
    if (it == sp->pending.end()) it = sp->pending.lower_bound(sp->readahead);
    if (it == sp->pending.end()) it = sp->pending.begin();
    const uint64_t lo = std::max(it->first, sp->readahead < EndOf(*it) ? sp->readahead : it->first);
    if (!(*sp->runs)[it->second.run].remote) return CopyRunAround(*sp, lo, false);  // (from the image)
    const uint64_t hi = std::min(EndOf(*it), lo + kPrefetchChunk);
    sp->readahead = hi;
    CRYO_RETURN_IF_ERROR(RequestRemote(*sp, lo, hi, false));
  }
  return Status::Ok();
}

Status LazyServer::DeliverArrivals() {
  std::vector<RemotePageSource::Arrival> got;
  CRYO_RETURN_IF_ERROR(remote_->Collect(&got));
  for (const RemotePageSource::Arrival& a : got) CRYO_RETURN_IF_ERROR(Deliver(a));
  return Status::Ok();
}

// Copies the pages of `a` into every address space of its pid that misses
// them (in flight or, a child's, still pending), wherever they are now.
Status LazyServer::Deliver(const RemotePageSource::Arrival& a) {
  const uint64_t alo = a.vaddr, ahi = a.vaddr + a.len();
  const double deadline = Now() + kChangingSeconds;
  for (;;) {
    bool changing = false;
    for (auto& spp : spaces_) {
      Space& sp = *spp;
      if (sp.pid != a.pid || sp.gone) continue;
      for (Pieces* m : {&sp.inflight, &sp.pending}) {
        // The parts of pieces whose image pages [alo, ahi) has, by address now.
        std::vector<std::pair<uint64_t, uint64_t>> parts;
        for (const auto& [at, p] : *m) {
          const Run& r = (*sp.runs)[p.run];
          if (!r.remote) continue;
          const uint64_t plo = r.vaddr + p.first * kPage, phi = plo + p.npages * kPage;
          const uint64_t lo = std::max(plo, alo), hi = std::min(phi, ahi);
          if (lo < hi) parts.emplace_back(at + (lo - plo), at + (hi - plo));
        }
        for (const auto& [lo, hi] : parts) {
          SplitAt(*m, lo);
          SplitAt(*m, hi);
          auto it = m->find(lo);
          if (it == m->end()) continue;
          const Run& r = (*sp.runs)[it->second.run];
          const char* src = a.bytes() + (r.vaddr + it->second.first * kPage - alo);
          uint64_t copied = 0;
          Result<CopyResult> c = CopyPiece(sp.uffd.get(), *m, it, src, &sp.gone, &copied);
          if (!c.ok()) return c.status().Prefixed(sp.name);
          {
            std::lock_guard<std::mutex> lock(mu_);
            ((a.tag & 1) ? stats_.faulted : stats_.prefetched) += copied;
          }
          if (*c == CopyResult::kChanging) changing = true;
          if (changing || sp.gone) break;
        }
        if (changing || sp.gone) break;
      }
      if (changing) {
        // An event is on its way (fork, mremap, madvise, munmap): read it,
        // then copy again where the pages are now (a fork's child included).
        CRYO_RETURN_IF_ERROR(HandleMessages(sp));
        break;
      }
    }
    if (!changing) return Status::Ok();
    AbsorbIncoming();
    if (Now() > deadline)
      return Status::Error("pid " + std::to_string(a.pid) + ": its address space kept changing (UFFDIO_COPY: "
                           "EAGAIN) for " + std::to_string(static_cast<int>(kChangingSeconds)) + " s");
    ::usleep(100);
  }
}

}  // namespace cryo
