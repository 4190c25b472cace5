#include "dump/prefetch.h"

#include <time.h>

#include <system_error>

#include "base/clock.h"
#include "files/fd_table.h"
#include "image/format.h"
#include "mem/cow_share.h"
#include "mem/mm_attrs.h"
#include "mem/vma_dump.h"

namespace cryo {


Result<ProcessFacts> ReadFacts(pid_t pid, bool shell_job, uint64_t buffered_max, const ParentMemory* parent) {
  ProcessFacts f;
  f.pid = pid;
  const double t0 = Now();
  CRYO_ASSIGN_OR_RETURN(f.stat, proc::ReadStat(pid));
  CRYO_ASSIGN_OR_RETURN(f.status, proc::ReadStatus(pid));
  CRYO_ASSIGN_OR_RETURN(f.vmas, proc::ReadVmas(pid));
  CRYO_RETURN_IF_ERROR(DescribeVmas(pid, f.vmas, &f.mm, &f.shm_maps).Prefixed("memory"));
  if (HasVmaAttributes(f.mm)) f.features.insert("vma-attributes");
  CRYO_RETURN_IF_ERROR(CheckKsmMergeAny(pid).Prefixed("memory"));
  if (parent) {
    auto inherited = FindInheritedPages(pid, f.mm, parent->pid, parent->mm);
    if (!inherited.ok()) return inherited.status().Prefixed("memory");
    for (image::PageRange& r : *inherited) *f.mm.add_inherited() = std::move(r);
    if (f.mm.inherited_size()) f.features.insert("cow-shared");
  }
  const double t1 = Now();
  CRYO_RETURN_IF_ERROR(DumpFdTable(pid, &f.fds, &f.features, shell_job).Prefixed("files"));
  const double t2 = Now();
  auto planned = PlanProcessPages(pid, &f.mm);
  if (!planned.ok()) return planned.status().Prefixed("memory");
  f.pieces = std::move(*planned);
  if (f.mm.total_pages() * image::kPageSize <= buffered_max) {
    f.pages = std::make_shared<std::string>();
    CRYO_RETURN_IF_ERROR(ReadPages(pid, f.pieces, &f.mm, f.pages.get()).Prefixed("memory"));
  }
  const double t3 = Now();
  f.proc_s = t1 - t0;
  f.fds_s = t2 - t1;
  f.pages_s = t3 - t2;
  return f;
}

Prefetcher::Prefetcher(std::vector<pid_t> pids, std::vector<pid_t> parents, bool shell_job, uint64_t buffered_max,
                       size_t ahead)
    : pids_(std::move(pids)),
      parents_(std::move(parents)),
      shell_job_(shell_job),
      buffered_max_(buffered_max),
      ahead_(ahead ? ahead : 1) {
  if (pids_.size() < 2) return;  // nothing to overlap
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
  while (read_ < pids_.size()) {
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
  Result<ProcessFacts> f = ReadFacts(pids_[i], shell_job_, buffered_max_, parent == memories_.end() ? nullptr : &parent->second);
  if (f.ok()) {
    ParentMemory& m = memories_[pids_[i]];
    m.pid = pids_[i];
    *m.mm.mutable_vmas() = f->mm.vmas();
  }
  return f;
}

Result<ProcessFacts> Prefetcher::Take() {
  std::unique_lock<std::mutex> lock(mu_);
  if (taken_ >= pids_.size()) return Status::Error("internal: no more processes to prefetch");
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
