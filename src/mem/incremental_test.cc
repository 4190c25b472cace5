#include "mem/incremental.h"

#include <sys/mman.h>

#include <gtest/gtest.h>

#include "image/format.h"
#include "mem/dirty_tracker.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kData = image::kPageDataOffset;

PageScanFn Present(std::vector<PageRegion> regions) {
  return [regions](uint64_t start, uint64_t end) -> Result<std::vector<PageRegion>> {
    std::vector<PageRegion> out;
    for (const PageRegion& r : regions)
      if (r.end > start && r.start < end) out.push_back({std::max(r.start, start), std::min(r.end, end), r.categories});
    return out;
  };
}

image::Mm OneVma(uint64_t start, uint64_t end) {
  image::Mm mm;
  image::Vma* v = mm.add_vmas();
  v->set_start(start);
  v->set_end(end);
  v->set_kind(image::VMA_ANON_PRIVATE);
  v->set_prot(PROT_READ | PROT_WRITE);
  return mm;
}

// Runs never cross a block boundary, whatever page starts them: the same
// pages give the same runs in a parent and a child even when other pages of
// the VMA came or went.
TEST(IncrementalTest, RunsCutAtBlockBoundaries) {
  const uint64_t a = 0x10000000;
  image::Mm mm = OneVma(a, a + (2 << 20));
  // Present from a + 12 KiB to a + 600 KiB.
  auto pieces = PlanPages(&mm, Present({{a + 3 * kPage, a + 150 * kPage, kPagePresent}}), kIncrementalRunBytes);
  ASSERT_TRUE(pieces.ok()) << pieces.status().ToString();
  ASSERT_EQ(mm.runs_size(), 3);
  EXPECT_EQ(mm.runs(0).vaddr(), a + 3 * kPage);
  EXPECT_EQ(mm.runs(0).npages(), 61u);  // up to a + 256 KiB
  EXPECT_EQ(mm.runs(1).vaddr(), a + 64 * kPage);
  EXPECT_EQ(mm.runs(1).npages(), 64u);
  EXPECT_EQ(mm.runs(2).vaddr(), a + 128 * kPage);
  EXPECT_EQ(mm.runs(2).npages(), 22u);
  EXPECT_EQ(mm.total_pages(), 147u);
  // A page that appears in front changes the first run only.
  image::Mm mm2 = OneVma(a, a + (2 << 20));
  ASSERT_TRUE(PlanPages(&mm2, Present({{a, a + 150 * kPage, kPagePresent}}), kIncrementalRunBytes).ok());
  ASSERT_EQ(mm2.runs_size(), 3);
  EXPECT_EQ(mm2.runs(1).vaddr(), mm.runs(1).vaddr());
  EXPECT_EQ(mm2.runs(2).npages(), mm.runs(2).npages());
}

// Relayout keeps the chosen runs' pieces (their readability too), back to
// back from the start of the page data.
TEST(IncrementalTest, RelayoutKeepsChosenRuns) {
  const uint64_t a = 0x10000000;
  image::Mm mm = OneVma(a, a + (2 << 20));
  auto pieces = PlanPages(&mm, Present({{a, a + 192 * kPage, kPagePresent}}), kIncrementalRunBytes);
  ASSERT_TRUE(pieces.ok());
  ASSERT_EQ(mm.runs_size(), 3);
  // Make the middle of run 2 unreadable (as SplitShared would).
  std::vector<PagePiece> split = {{a, 130 * kPage, kData, true},
                                  {a + 130 * kPage, 2 * kPage, kData + 130 * kPage, false},
                                  {a + 132 * kPage, 60 * kPage, kData + 132 * kPage, true}};
  std::vector<image::PageRun> kept;
  auto out = Relayout(split, {&mm.runs(0), &mm.runs(2)}, &kept);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].offset(), kData);
  EXPECT_EQ(kept[1].offset(), kData + 64 * kPage);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].vaddr, a);
  EXPECT_EQ(out[0].len, 64 * kPage);
  EXPECT_EQ(out[0].file_off, kData);
  EXPECT_EQ(out[1].vaddr, a + 128 * kPage);
  EXPECT_EQ(out[1].len, 2 * kPage);
  EXPECT_EQ(out[1].file_off, kData + 64 * kPage);
  EXPECT_FALSE(out[2].readable);
  EXPECT_EQ(out[2].file_off, kData + 66 * kPage);
  EXPECT_EQ(out[3].len, 60 * kPage);
  EXPECT_EQ(out[3].file_off, kData + 68 * kPage);
}

// A pre-copy round (compare false): a run the tracking vouches for is taken
// from the parent unread, unless the parent could not read a page of it
// (ParentProcessPages::unread: its bytes there are zeros); every other run is
// stored without being read (pid 0: a read would fail).
TEST(IncrementalTest, RoundTakesOnlyVouchedAndReadRuns) {
  const uint64_t a = 0x10000000;
  const uint64_t block = kIncrementalRunBytes;
  image::Mm parent_mm = OneVma(a, a + 3 * block);
  ASSERT_TRUE(PlanPages(&parent_mm, Present({{a, a + 3 * block, kPagePresent}}), block).ok());
  ASSERT_EQ(parent_mm.runs_size(), 3);
  ParentProcessPages parent;
  parent.start_ticks = 1;
  parent.vmas.assign(parent_mm.vmas().begin(), parent_mm.vmas().end());
  for (image::PageRun r : parent_mm.runs()) {
    r.set_depth(1);
    parent.runs[r.vaddr()] = r;
  }
  parent.unread = {{a + block + 5 * kPage, a + block + 6 * kPage}};  // in run 1
  DirtyPages dirty;
  dirty.tracked = {{a, a + 3 * block}};
  dirty.written = {{a + 2 * block + kPage, a + 2 * block + 2 * kPage}};  // in run 2
  image::Mm mm = OneVma(a, a + 3 * block);
  auto pieces = PlanPages(&mm, Present({{a, a + 3 * block, kPagePresent}}), block);
  ASSERT_TRUE(pieces.ok());
  IncrementalCounts counts;
  Status s = TakeUnchangedFromParent(0, parent, &mm, &*pieces, &counts, &dirty, /*compare=*/false);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(mm.parent_runs_size(), 1);
  EXPECT_EQ(mm.parent_runs(0).vaddr(), a);
  ASSERT_EQ(mm.runs_size(), 2);
  EXPECT_EQ(mm.runs(0).vaddr(), a + block);
  EXPECT_EQ(mm.runs(1).vaddr(), a + 2 * block);
  EXPECT_EQ(counts.compared_pages, 0u);
  EXPECT_EQ(counts.tracked_pages, block / kPage);
}

}  // namespace
}  // namespace cryo
