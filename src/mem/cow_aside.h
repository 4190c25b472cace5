// The pages a copy-on-write dump (mem/cow_copy.h) copies aside: a page the
// program writes before the copy has reached it is read by the fault thread
// while its writer waits, and kept here until the copy takes it.
//
// Bounded: up to a limit (1 MiB, CRYO_COW_ASIDE_KIB for tests) the pages are
// held in memory; past it they go to a spill file, an unnamed file
// (O_TMPFILE, else a name removed at once) in the images directory, which
// vanishes with cryo however it ends. A program rewriting all its memory
// during the copy then costs disk (at most its page file's size again, the
// slots of pages taken being used again), not cryo's memory. Not thread-safe:
// the caller holds its lock.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace cryo {

class CowAside {
 public:
  // `dir`: where the spill file goes (made on first need); limit in bytes.
  explicit CowAside(std::string dir, uint64_t limit = DefaultLimit()) : dir_(std::move(dir)), limit_(limit) {}
  // 1 MiB (cryo's peak RSS stays under 16 MiB: bench/README.md, branch
  // cowsmall), or CRYO_COW_ASIDE_KIB KiB.
  static uint64_t DefaultLimit();

  // Keeps the page at `page` (kPageSize bytes); one already kept stays.
  Status Put(uint64_t page, const char* bytes);
  // Moves the page out into dst: false when it is not kept.
  Result<bool> Take(uint64_t page, char* dst);
  bool Has(uint64_t page) const { return mem_.count(page) || spilled_.count(page); }
  // Drops what is kept in [start, end).
  void Drop(uint64_t start, uint64_t end);

  uint64_t peak_memory() const { return peak_mem_; }
  uint64_t spilled_pages() const { return spilled_total_; }

 private:
  Status OpenSpill();
  const std::string dir_;
  const uint64_t limit_;
  std::map<uint64_t, std::string> mem_;
  std::map<uint64_t, uint64_t> spilled_;  // page -> offset in the spill file
  std::vector<uint64_t> free_slots_;       // offsets of taken pages, to use again
  UniqueFd spill_;
  uint64_t spill_end_ = 0, mem_bytes_ = 0, peak_mem_ = 0, spilled_total_ = 0;
};

}  // namespace cryo
