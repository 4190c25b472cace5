#include "dump/prefetch.h"

#include <time.h>

#include <cinttypes>

#include <system_error>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "files/fd_table.h"
#include "image/format.h"
#include "mem/cow_share.h"
#include "mem/existing_pages.h"
#include "mem/vma_dump.h"

namespace cryo {


Result<ProcessFacts> DescribeProcess(pid_t pid, bool shell_job, const DumpScope* scope) {
  ProcessFacts f;
  f.pid = pid;
  const double t0 = Now();
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  CRYO_ASSIGN_OR_RETURN(f.stat_text, ReadFileToString(dir + "stat"));
  CRYO_ASSIGN_OR_RETURN(f.stat, proc::ParseStat(f.stat_text));
  CRYO_ASSIGN_OR_RETURN(f.status_text, ReadFileToString(dir + "status"));
  CRYO_ASSIGN_OR_RETURN(f.status, proc::ParseStatus(f.status_text));
  CRYO_ASSIGN_OR_RETURN(f.smaps_text, ReadFileToString(dir + "smaps"));
  CRYO_ASSIGN_OR_RETURN(f.vmas, proc::ParseSmaps(f.smaps_text));
  f.refusal = DescribeVmas(pid, f.vmas, &f.mm, &f.shm_maps, &f.unlinked_maps);
  if (HasVmaAttributes(f.mm)) f.features.insert("vma-attributes");
  for (const image::Vma& v : f.mm.vmas()) {
    if (v.huge_page_size()) f.features.insert("hugetlb");
    // Copies on write of a hugetlb memfd or hugetlbfs file (mem/hugetlb.h).
    if (v.huge_page_size() && v.kind() == image::VMA_FILE_PRIVATE) f.features.insert("hugetlb-private-file");
    if (v.kind() == image::VMA_AIO_RING) f.features.insert("aio-context");  // mem/aio_ring.h
  }
  const double t1 = Now();
  if (f.refusal.ok()) f.refusal = DumpFdTable(pid, &f.fds, &f.features, shell_job, scope, &f.fd_infos);
  f.proc_s = t1 - t0;
  f.fds_s = Now() - t1;
  return f;
}

Status ReadProcessPages(ProcessFacts* f, uint64_t buffered_max, const ParentMemory* parent) {
  const double t0 = Now();
  const pid_t pid = f->pid;
  if (parent) {
    auto inherited = FindInheritedPages(pid, f->mm, parent->pid, parent->mm);
    if (!inherited.ok()) return inherited.status().Prefixed("memory");
    for (image::PageRange& r : *inherited) *f->mm.add_inherited() = std::move(r);
    if (f->mm.inherited_size()) f->features.insert("cow-shared");
  }
  if (f->leave_unplanned && f->mm.inherited_size() == 0 && !f->parent_pages) {
    uint64_t n = 0, bytes = 0;
    for (image::Vma& v : *f->mm.mutable_vmas())
      if (MayLeaveUnplanned(v)) {
        v.set_remote_unplanned(true);
        ++n;
        bytes += v.end() - v.start();
      }
    if (n) {
      f->features.insert("remote-vmas");
      LOG_INFO("pid %d: %" PRIu64 " VMAs (%" PRIu64 " KiB mapped) left unplanned: the target asks which pages exist",
               pid, n, bytes >> 10);
    }
  }
  auto planned = PlanProcessPages(pid, &f->mm, f->run_block);
  if (!planned.ok()) return planned.status().Prefixed("memory");
  f->pieces = std::move(*planned);
  if (f->mm.guard_regions_size()) f->features.insert("guard-regions");
  if (f->parent_pages && f->parent_pages->start_ticks != 0 && f->parent_pages->start_ticks == f->stat.starttime)
    CRYO_RETURN_IF_ERROR(TakeUnchangedFromParent(pid, *f->parent_pages, &f->mm, &f->pieces, &f->incremental, f->dirty,
                                                 f->compare_unchanged)
                             .Prefixed("memory (incremental)"));
  else if (f->parent_pages)
    LOG_INFO("pid %d: not the process of that pid in the parent image (started at another time): stored in full", pid);
  if (f->mm.total_pages() * image::kPageSize <= buffered_max) {
    f->pages = std::make_shared<std::string>();
    CRYO_RETURN_IF_ERROR(ReadPages(pid, f->pieces, &f->mm, f->pages.get()).Prefixed("memory"));
  }
  f->pages_s = Now() - t0;
  return Status::Ok();
}

Prefetcher::Prefetcher(std::vector<ProcessFacts> described, std::vector<pid_t> parents, uint64_t buffered_max,
                       size_t ahead)
    : described_(std::move(described)),
      parents_(std::move(parents)),
      buffered_max_(buffered_max),
      ahead_(ahead ? ahead : 1) {
  if (described_.size() < 2) return;  // nothing to overlap
  try {
    thread_ = std::thread(&Prefetcher::Loop, this);
  } catch (const std::system_error&) {
    // Take() reads in place.
  }
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void Prefetcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (read_ < described_.size()) {
    cv_.wait(lock, [&] { return stop_ || read_ < taken_ + ahead_; });
    if (stop_) return;
    const size_t i = read_;
    lock.unlock();
    Result<ProcessFacts> f = Read(i);
    lock.lock();
    const bool failed = !f.ok();
    ready_.push_back(std::move(f));
    ++read_;
    cv_.notify_all();
    if (failed) return;  // the dump stops at this process
  }
}

// On one thread only (the reading thread, or Take's without one).
Result<ProcessFacts> Prefetcher::Read(size_t i) {
  auto parent = i < parents_.size() ? memories_.find(parents_[i]) : memories_.end();
  ProcessFacts f = std::move(described_[i]);
  CRYO_RETURN_IF_ERROR(ReadProcessPages(&f, buffered_max_, parent == memories_.end() ? nullptr : &parent->second));
  ParentMemory& m = memories_[f.pid];
  m.pid = f.pid;
  *m.mm.mutable_vmas() = f.mm.vmas();
  return f;
}

Result<ProcessFacts> Prefetcher::Take() {
  std::unique_lock<std::mutex> lock(mu_);
  if (taken_ >= described_.size()) return Status::Error("internal: no more processes to prefetch");
  if (!thread_.joinable()) {
    const size_t i = taken_++;
    lock.unlock();
    return Read(i);
  }
  cv_.wait(lock, [&] { return !ready_.empty(); });
  Result<ProcessFacts> f = std::move(ready_.front());
  ready_.pop_front();
  ++taken_;
  cv_.notify_all();
  return f;
}

}  // namespace cryo
