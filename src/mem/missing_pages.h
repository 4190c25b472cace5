// The pages of a lazy restore still missing in one address space
// (mem/lazy_server.h), by their current address: each piece is a part of one
// page run of the image, and follows what the program does to its memory
// meanwhile (userfaultfd events): dropped where it was unmapped or discarded,
// moved where it was mremap'd.
#pragma once

#include <cstdint>
#include <map>

namespace cryo::lazy {

inline constexpr uint64_t kPage = 4096;

// Pages [first, first + npages) of run `run`, missing at the key's address.
struct Piece {
  uint64_t npages;
  uint32_t run;
  uint64_t first;
};
using Pieces = std::map<uint64_t, Piece>;

inline uint64_t EndOf(const Pieces::value_type& p) { return p.first + p.second.npages * kPage; }
// The piece holding `addr`, or m.end().
Pieces::iterator Lookup(Pieces& m, uint64_t addr);
// Splits the piece that straddles `addr`, if any.
void SplitAt(Pieces& m, uint64_t addr);
// Drops the missing pages of [start, end) (munmap, MADV_DONTNEED: they read
// back zero); returns how many.
uint64_t Drop(Pieces& m, uint64_t start, uint64_t end);
// mremap moved [from, from + len) to `to` (what was at `to` is gone).
void Move(Pieces& m, uint64_t from, uint64_t to, uint64_t len);

}  // namespace cryo::lazy
