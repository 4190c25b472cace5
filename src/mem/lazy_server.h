// The page server of a lazy restore (cryo restore --lazy): the restored tree
// runs while its private anonymous pages (mem/lazy_plan.h) are still in the
// image; cryo serves each first touch and fills the rest in the background.
//
// Each restored process has a userfaultfd (made by its restore helper, the
// lazy VMAs registered in missing mode by its restorer blob once they are in
// place); cryo takes its own copy with pidfd_getfd(2) and serves it on one
// thread:
//  - a page fault (UFFD_EVENT_PAGEFAULT) on a page of a lazy run: the whole
//    run (at most 4 MiB) is read from the page file, its checksum checked,
//    and copied in with UFFDIO_COPY, which wakes the faulting thread (a
//    post-copy run's pages come from the source instead: mem/lazy_remote.cc,
//    64 KiB around the fault first, asked at once, several requests in
//    flight, the prefetch reading ahead from there); a fault
//    on a page that had none (never touched before the dump, or since grown
//    into) gets the zero page (UFFDIO_ZEROPAGE);
//  - between faults, the prefetch copies the runs still missing, in address
//    order, one run at a time, so that a fault waits for one run at most;
//  - the events the program's own memory changes raise while pages are
//    missing (userfaultfd(2), "non-cooperative" events): UFFD_EVENT_FORK gives
//    the child a userfaultfd of its own, served like its parent's with the
//    parent's missing pages; UFFD_EVENT_REMAP moves missing pages with their
//    VMA (mremap); UFFD_EVENT_REMOVE (MADV_DONTNEED, MADV_FREE) and
//    UFFD_EVENT_UNMAP (munmap, mmap over it, mremap's shrink) drop them: they
//    read back zero from then on, never the image's bytes;
//  - UFFDIO_COPY answers EAGAIN while such an event is not yet read (the
//    kernel's mmap_changing): the events are read and the copy retried;
//    EEXIST (the page is in already) skips the page; ENOENT (no registered
//    VMA there any more) drops it; ESRCH (the address space is gone: the
//    process exited or exec'd) ends that address space's service.
// A page that cannot be served (page file unreadable, short, or a checksum
// mismatch) is never replaced by zeros: the tree is killed (every image
// process and their descendants, stopped first so that none forks away), and
// the error names the pid, the address and the file. If cryo itself dies, a
// guardian (a sentinel, base/sentinel.h, holding every userfaultfd, so none
// is released into zero-fill) kills the tree the same way.
// Once every page is in, the userfaultfds are closed (the VMAs become
// ordinary again: userfaultfd_release) and the server reports.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/sentinel.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "mem/missing_pages.h"
#include "image/image_dir.h"
#include "image/page_source.h"
#include "mem/remote_pages.h"

namespace cryo {

struct LazyStats {
  uint64_t pages = 0;             // lazy pages in the image
  uint64_t faulted = 0;           // pages copied for a fault (whole runs)
  uint64_t prefetched = 0;        // pages copied by the prefetch
  uint64_t dropped = 0;           // pages the program unmapped or discarded before they came
  uint64_t zero_faults = 0;       // faults answered with the zero page
  uint64_t forks = 0;             // address spaces added by a fork
  double seconds = 0;             // from the first process adopted to the last page in
};

struct LazyPlan;

class LazyServer {
 public:
  // Opens the page files of every process with lazy pages and starts the
  // guardian. `avoid`: pids the guardian must not take (the image's).
  // `inherited_by_children(pid)`: the pages pid's children inherit from it,
  // which its helper fills eagerly (the same ranges the helpers plan with:
  // a run the server thought eager and the helper left lazy would never come).
  // `remote` (post-copy migration): where the runs marked remote come from
  // (their checksum is none: the link's integrity is TLS's, or TCP's).
  static Result<std::unique_ptr<LazyServer>> Create(
      const image::LoadedImage& img, const std::set<pid_t>& avoid,
      const std::function<const std::vector<image::PageRange>&(pid_t)>& inherited_by_children,
      RemotePageSource* remote = nullptr);
  ~LazyServer();  // stops serving (the tree must be dead or fully in by then)
  LazyServer(const LazyServer&) = delete;
  LazyServer& operator=(const LazyServer&) = delete;

  // Takes over the userfaultfd `fd` of process `pid` (pidfd_getfd) and
  // serves it from now on.
  Status Adopt(pid_t pid, int fd);
  // Every process is released: the server may finish once every page is in.
  void Released();
  // Waits until every page is in, or the serving failed (the tree killed).
  Status Wait();
  // A failure so far (the tree is killed then), or Ok.
  Status status() const;
  LazyStats stats() const;
  // One line for the user: pages, how they came, the time.
  std::string Report() const;

  // One page run of an image process.
  struct Run {
    const image::PageSource* src;
    uint64_t vaddr, npages, offset, checksum;
    bool remote = false;  // from remote_, not from src
  };
  // One address space served (an image process, or a child it forked).
  struct Space {
    std::string name;  // "pid N", or "a child of pid N" (forked while pages were missing)
    pid_t pid = 0;     // the image process whose runs these are
    const std::vector<Run>* runs = nullptr;
    UniqueFd uffd;
    lazy::Pieces pending;
    // (post-copy) asked of the source, not yet in: a fault there waits for
    // the answer, which wakes it (UFFDIO_COPY).
    lazy::Pieces inflight;
    uint64_t readahead = 0;  // (post-copy) where the prefetch goes on: after the last pages asked
    uint64_t ra_mark = 0;    // (post-copy) where the last read-ahead began
    uint64_t ra_size = 0;    // (post-copy) and its size
    std::deque<uint64_t> faults;
    bool gone = false;  // the address space is gone (ESRCH)
  };

 private:
  LazyServer() = default;
  void Serve();
  void Fail(const Status& s);
  bool ServeOnce();
  Status HandleMessages(Space& sp);
  Status ServeFault(Space& sp, uint64_t addr);
  Status CopyRunAround(Space& sp, uint64_t addr, bool fault);
  Status AddUnplannedRuns(pid_t pid, const image::Mm& mm, const LazyPlan& plan,
                          const std::vector<image::PageRange>& inherited_by_children, std::vector<Run>* runs);
  Status FetchRun(const Space& sp, uint32_t run);
  bool PrefetchHeld();
  void AbsorbIncoming();
  // Post-copy (mem/lazy_remote.cc): remote runs come in pieces, pipelined.
  Status RequestRemote(Space& sp, uint64_t lo, uint64_t hi, bool fault);
  Status ServeRemoteFault(Space& sp, uint64_t addr);
  Status ReadAhead(Space& sp, uint64_t from);
  Status PrefetchRemote();
  Status DeliverArrivals();
  Status Deliver(const RemotePageSource::Arrival& a);
  uint64_t next_tag_ = 0;

  RemotePageSource* remote_ = nullptr;
  // The runs of each image process (children forked later share them).
  std::map<pid_t, std::vector<Run>> runs_;
  std::map<pid_t, std::vector<image::PageSource>> sources_;
  std::vector<std::unique_ptr<Space>> spaces_;
  std::vector<std::unique_ptr<Space>> incoming_;  // adopted, not yet served (under mu_)
  std::vector<std::pair<pid_t, UniqueFd>> pidfds_;  // the image's processes, to kill on failure
  std::unique_ptr<Sentinel> guardian_;
  mutable std::mutex mu_;
  Status status_;
  LazyStats stats_;
  std::atomic<bool> released_{false}, stop_{false}, done_{false};
  std::thread thread_;
  double t0_ = 0;
  // Test hook: with CRYO_LAZY_HOLD=FILE in cryo's environment the prefetch
  // waits until FILE exists (at most 60 s); faults are served meanwhile.
  std::string hold_file_;
  // The last run read (a fault and the prefetch of its neighbours reuse it).
  void* buf_ = nullptr;
  uint64_t buf_len_ = 0;
  const Run* buf_run_ = nullptr;
};

// Kills the processes `procs` (pid, pidfd) and all their descendants: each is
// stopped (SIGSTOP) until no new descendant appears for a few rounds, then
// all get SIGKILL.
void KillTreeOf(const std::vector<std::pair<pid_t, int>>& procs);

namespace lazy {
enum class CopyResult { kDone, kChanging };
// UFFDIO_COPY of the piece at `it` from `src` (its first page's bytes);
// trims the piece by what is in. kChanging: EAGAIN, the events must be read
// first. *gone: the address space is gone (ESRCH).
Result<CopyResult> CopyPiece(int uffd, Pieces& m, Pieces::iterator it, const char* src, bool* gone, uint64_t* copied);
}  // namespace lazy

}  // namespace cryo
