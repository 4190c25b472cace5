#include <gtest/gtest.h>

#include "mem/lazy_plan.h"
#include "mem/missing_pages.h"

namespace cryo {
namespace {

using lazy::kPage;
using lazy::Pieces;

image::Vma AnonVma(uint64_t start, uint64_t end, std::vector<std::string> flags = {}) {
  image::Vma v;
  v.set_start(start);
  v.set_end(end);
  v.set_kind(image::VMA_ANON_PRIVATE);
  v.set_flags(0x02);  // MAP_PRIVATE
  for (auto& f : flags) v.add_vm_flags(f);
  return v;
}

void AddRun(image::Mm* mm, uint64_t vaddr, uint64_t npages) {
  image::PageRun* r = mm->add_runs();
  r->set_vaddr(vaddr);
  r->set_npages(npages);
}

TEST(LazyPlan, PrivateAnonymousRunsAreLazyButLockedWipedSharedAndInherited) {
  image::Mm mm;
  *mm.add_vmas() = AnonVma(0x10000, 0x20000);
  *mm.add_vmas() = AnonVma(0x20000, 0x30000, {"lo"});
  *mm.add_vmas() = AnonVma(0x30000, 0x40000, {"wf"});
  image::Vma shared = AnonVma(0x40000, 0x50000);
  shared.set_kind(image::VMA_ANON_SHARED);
  *mm.add_vmas() = shared;
  *mm.add_vmas() = AnonVma(0x50000, 0x60000);
  for (uint64_t a : {0x10000, 0x20000, 0x30000, 0x40000, 0x50000, 0x58000}) AddRun(&mm, a, 2);
  image::PageRange child;  // a child shares the run at 0x58000 copy-on-write
  child.set_vaddr(0x59000);
  child.set_npages(1);
  const LazyPlan plan = PlanLazy(mm, {child});
  ASSERT_EQ(plan.runs.size(), 2u);
  EXPECT_EQ(plan.runs[0]->vaddr(), 0x10000u);
  EXPECT_EQ(plan.runs[1]->vaddr(), 0x50000u);
  EXPECT_EQ(plan.pages(), 4u);
  const std::vector<std::pair<uint64_t, uint64_t>> vmas = {{0x10000, 0x20000}, {0x50000, 0x60000}};
  EXPECT_EQ(plan.vmas, vmas);
  EXPECT_TRUE(plan.set.count(&mm.runs(0)));
  EXPECT_FALSE(plan.set.count(&mm.runs(5)));
}

TEST(LazyPlan, DroppableMemoryStaysEager) {
  image::Vma v = AnonVma(0x10000, 0x20000);
  v.set_flags(0x08);  // MAP_DROPPABLE
  EXPECT_FALSE(LazyEligibleVma(v));
  EXPECT_TRUE(LazyEligibleVma(AnonVma(0x10000, 0x20000, {"hg"})));
}

Pieces TenPages() { return {{0x100000, {10, 7, 0}}}; }

TEST(MissingPages, LookupFindsThePieceHoldingAnAddress) {
  Pieces m = TenPages();
  EXPECT_EQ(lazy::Lookup(m, 0x100000 + 9 * kPage + 5)->first, 0x100000u);
  EXPECT_EQ(lazy::Lookup(m, 0x100000 + 10 * kPage), m.end());
  EXPECT_EQ(lazy::Lookup(m, 0xff000), m.end());
}

TEST(MissingPages, DropSplitsAndForgetsTheDroppedPages) {
  Pieces m = TenPages();
  EXPECT_EQ(lazy::Drop(m, 0x100000 + 2 * kPage, 0x100000 + 5 * kPage), 3u);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at(0x100000).npages, 2u);
  const lazy::Piece& tail = m.at(0x100000 + 5 * kPage);
  EXPECT_EQ(tail.npages, 5u);
  EXPECT_EQ(tail.first, 5u);  // page 5 of the run
  EXPECT_EQ(tail.run, 7u);
  EXPECT_EQ(lazy::Lookup(m, 0x100000 + 3 * kPage), m.end());
  EXPECT_EQ(lazy::Drop(m, 0, 0x200000), 7u);
  EXPECT_TRUE(m.empty());
}

TEST(MissingPages, MoveTakesThePagesAlongAndReplacesTheDestination) {
  Pieces m = TenPages();
  m[0x300000] = {4, 8, 0};  // at the destination: unmapped by the move
  lazy::Move(m, 0x100000 + 4 * kPage, 0x300000, 4 * kPage);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.at(0x100000).npages, 4u);
  EXPECT_EQ(m.at(0x100000 + 8 * kPage).first, 8u);
  const lazy::Piece& moved = m.at(0x300000);
  EXPECT_EQ(moved.run, 7u);
  EXPECT_EQ(moved.first, 4u);
  EXPECT_EQ(moved.npages, 4u);
}

}  // namespace
}  // namespace cryo
