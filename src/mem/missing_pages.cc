#include "mem/missing_pages.h"

#include <utility>
#include <vector>

namespace cryo::lazy {

Pieces::iterator Lookup(Pieces& m, uint64_t addr) {
  auto it = m.upper_bound(addr);
  if (it == m.begin()) return m.end();
  --it;
  return addr < EndOf(*it) ? it : m.end();
}

void SplitAt(Pieces& m, uint64_t addr) {
  auto it = Lookup(m, addr);
  if (it == m.end() || it->first == addr) return;
  const uint64_t k = (addr - it->first) / kPage;
  const Piece tail = {it->second.npages - k, it->second.run, it->second.first + k};
  it->second.npages = k;
  m.emplace(addr, tail);
}

uint64_t Drop(Pieces& m, uint64_t start, uint64_t end) {
  SplitAt(m, start);
  SplitAt(m, end);
  uint64_t n = 0;
  auto it = m.lower_bound(start);
  while (it != m.end() && it->first < end) {
    n += it->second.npages;
    it = m.erase(it);
  }
  return n;
}

void Move(Pieces& m, uint64_t from, uint64_t to, uint64_t len) {
  SplitAt(m, from);
  SplitAt(m, from + len);
  std::vector<std::pair<uint64_t, Piece>> moved;
  for (auto it = m.lower_bound(from); it != m.end() && it->first < from + len;) {
    moved.emplace_back(to + (it->first - from), it->second);
    it = m.erase(it);
  }
  Drop(m, to, to + len);
  for (const auto& [a, p] : moved) m.emplace(a, p);
}

}  // namespace cryo::lazy
