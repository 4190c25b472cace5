#include "mem/vma_restore.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

constexpr uint64_t kPage = 4096;

bool Overlaps(uint64_t a, uint64_t len, const std::vector<std::pair<uint64_t, uint64_t>>& used) {
  for (auto& u : used)
    if (a < u.second && u.first < a + len) return true;
  return false;
}

TEST(FindGapTest, PicksFreeRangeBelowTheMmapArea) {
  std::vector<std::pair<uint64_t, uint64_t>> used = {{0x555555554000, 0x555555600000},
                                                     {0x7eff00000000, 0x7f0000001000},
                                                     {0x7ffd00000000, 0x7ffd00100000}};
  auto r = FindGap(used, 1 << 30);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r % kPage, 0u);
  EXPECT_FALSE(Overlaps(*r - kPage, (1 << 30) + 2 * kPage, used));
}

TEST(FindGapTest, SkipsOverlappingIntervals) {
  // A big interval that contains smaller ones must not let a gap slip inside it.
  std::vector<std::pair<uint64_t, uint64_t>> used = {{0x100000000, 0x7e0000000000},
                                                     {0x200000000, 0x300000000},
                                                     {0x7e0000001000, 0x7f0000000000}};
  auto r = FindGap(used, 16 << 20);
  ASSERT_FALSE(r.ok());  // nothing free between 4 GiB and the mmap area top
}

TEST(FindGapTest, FindsHoleBetweenIntervals) {
  std::vector<std::pair<uint64_t, uint64_t>> used = {{0x100000000, 0x500000000},
                                                     {0x500100000 + (64 << 20), 0x7f0000000000}};
  auto r = FindGap(used, 64 << 20);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(Overlaps(*r, 64 << 20, used));
  EXPECT_GE(*r, 0x500000000u);
}

TEST(FindGapTest, EmptyAddressSpace) {
  auto r = FindGap({}, 1 << 20);
  ASSERT_TRUE(r.ok());
  EXPECT_LT(*r, 0x7f0000000000u);
  EXPECT_GE(*r, 1ull << 32);
}

image::Vma Special(image::VmaKind kind, const std::string& name, uint64_t start, uint64_t len) {
  image::Vma v;
  v.set_kind(kind);
  v.set_name(name);
  v.set_start(start);
  v.set_end(start + len);
  return v;
}

proc::Vma Own(const std::string& name, uint64_t start, uint64_t len) {
  proc::Vma v;
  v.name = name;
  v.start = start;
  v.end = start + len;
  return v;
}

TEST(SpecialMovesTest, SameLayoutMovesTogether) {
  image::Mm mm;
  *mm.add_vmas() = Special(image::VMA_VVAR, "[vvar]", 0x7f0000000000, 4 * kPage);
  *mm.add_vmas() = Special(image::VMA_VVAR_VCLOCK, "[vvar_vclock]", 0x7f0000004000, 2 * kPage);
  *mm.add_vmas() = Special(image::VMA_VDSO, "[vdso]", 0x7f0000006000, 2 * kPage);
  std::vector<proc::Vma> own = {Own("[vvar]", 0x7e0000000000, 4 * kPage), Own("[vvar_vclock]", 0x7e0000004000, 2 * kPage),
                                Own("[vdso]", 0x7e0000006000, 2 * kPage)};
  std::vector<restorer::Move> moves;
  ASSERT_TRUE(PlanSpecialMoves(mm, own, &moves).ok());
  ASSERT_EQ(moves.size(), 3u);
  EXPECT_EQ(moves[2].from, 0x7e0000006000u);
  EXPECT_EQ(moves[2].to, 0x7f0000006000u);
}

TEST(SpecialMovesTest, DifferentLayoutIsRefused) {
  image::Mm mm;
  *mm.add_vmas() = Special(image::VMA_VVAR, "[vvar]", 0x7f0000000000, 4 * kPage);
  *mm.add_vmas() = Special(image::VMA_VDSO, "[vdso]", 0x7f0000004000, 2 * kPage);
  std::vector<proc::Vma> own = {Own("[vvar]", 0x7e0000000000, 3 * kPage), Own("[vdso]", 0x7e0000003000, 2 * kPage)};
  std::vector<restorer::Move> moves;
  Status s = PlanSpecialMoves(mm, own, &moves);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("vDSO layout"), std::string::npos);
}

TEST(PremapTest, SizeCountsGuardPages) {
  image::Mm mm;
  image::Vma* v = mm.add_vmas();
  v->set_kind(image::VMA_ANON_PRIVATE);
  v->set_start(0x10000);
  v->set_end(0x12000);
  *mm.add_vmas() = Special(image::VMA_VDSO, "[vdso]", 0x20000, kPage);
  EXPECT_EQ(PremapSize(mm, VmasWithHugeRanges(mm)), 2 * kPage + 2 * kPage);
}

}  // namespace
}  // namespace cryo
