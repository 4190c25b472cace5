// What of a seized process can be read without ptrace (/proc, PAGEMAP_SCAN,
// process_vm_readv), gathered on a second thread one process ahead of the
// ptrace part (remote system calls, registers), which only the thread that
// seized a process may do. Collecting a tree so keeps both cores busy.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "files/fd_kind.h"
#include "mem/incremental.h"
#include "mem/page_dump.h"
#include "mem/shm_dump.h"
#include "proc/proc.h"

namespace cryo {

// One process: described before anything is written (DescribeProcess), its
// pages read ahead later (ReadProcessPages).
struct ProcessFacts {
  pid_t pid = 0;
  std::string stat_text, status_text, smaps_text;  // as read (for the audit; dropped after it)
  proc::Stat stat;
  proc::ProcStatus status;
  std::vector<proc::Vma> vmas;
  image::Mm mm;        // VMAs described, pages planned (checksummed too when `pages` is set)
  image::FdTable fds;  // before file ids are assigned
  std::vector<proc::FdInfo> fd_infos;  // fdinfo of each fd of `fds`, in the same order
  // Why describing stopped: a VMA or fd cryo does not support (the audit
  // reports it with the rest). `mm` and `fds` are then incomplete.
  Status refusal;
  std::vector<ShmMapping> shm_maps;  // VMAs of memfds, /dev/shm files, SysV segments
  std::vector<int> unlinked_maps;    // VMAs of deleted files with no name left
  std::set<std::string> features;
  std::vector<PagePiece> pieces;
  // Incremental dumps: the runs' block (PlanPages), and this process in the
  // parent image (same pid; taken from only with the same start time).
  uint64_t run_block = 0;
  // Post-copy (cryo migrate --lazy) of a process no child in the tree shares
  // pages with: its private anonymous VMAs are left unplanned (feature
  // "remote-vmas", mem/existing_pages.h).
  bool leave_unplanned = false;
  const ParentProcessPages* parent_pages = nullptr;
  const DirtyPages* dirty = nullptr;  // what the dirty tracking knows since the parent (mem/dirty_tracker.h)
  // Runs of the parent not vouched for by `dirty` are compared (read during
  // the freeze); false (a pre-copy round, read while the tree runs): stored.
  bool compare_unchanged = true;
  IncrementalCounts incremental;
  std::shared_ptr<std::string> pages;  // the page data, read ahead when small; else null
  double proc_s = 0, fds_s = 0, pages_s = 0;  // where the time went (debug log)
};

// The process a child's pages are compared with (cow_share.h): its parent in
// the tree, read before it.
struct ParentMemory {
  pid_t pid = 0;
  image::Mm mm;  // its VMAs
};

// Reads /proc/PID/{stat,status,smaps} and describes the process's VMAs and
// fds. A VMA or fd of a kind cryo does not support ends the describing and
// is kept in `refusal` (an error reading /proc is returned). Its fds are
// checked against `scope` (the tree) when given.
Result<ProcessFacts> DescribeProcess(pid_t pid, bool shell_job, const DumpScope* scope = nullptr);
// The pages of a described process: those it still shares copy-on-write
// with `parent` (if given) are recorded as inherited and not stored; with at
// most `buffered_max` bytes of pages left, they are read too.
Status ReadProcessPages(ProcessFacts* f, uint64_t buffered_max, const ParentMemory* parent);

class Prefetcher {
 public:
  // Starts reading the pages of `described` processes in order on a thread,
  // at most `ahead` processes ahead of Take(). The first error ends the
  // reading; Take() returns it for its process.
  // `parents[i]`: the parent of described[i] in the tree (0: none), read before it.
  Prefetcher(std::vector<ProcessFacts> described, std::vector<pid_t> parents, uint64_t buffered_max, size_t ahead);
  ~Prefetcher();  // stops the thread (what it read is dropped)
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  // The facts of the next pid, waiting for them.
  Result<ProcessFacts> Take();

 private:
  void Loop();
  Result<ProcessFacts> Read(size_t i);
  std::vector<ProcessFacts> described_;  // each moved out when its pages are read
  const std::vector<pid_t> parents_;
  std::map<pid_t, ParentMemory> memories_;  // the VMAs of every process read, by pid (reading thread only)
  const uint64_t buffered_max_;
  const size_t ahead_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Result<ProcessFacts>> ready_;
  size_t taken_ = 0, read_ = 0;
  bool stop_ = false;
  std::thread thread_;  // not started: Take() reads in place
};

}  // namespace cryo
