#include "mem/thp.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "mem/vma_restore.h"

namespace cryo {
namespace {

constexpr uint64_t kM = 1ull << 20;

image::Vma* AddVma(image::Mm* mm, uint64_t start, uint64_t end, image::VmaKind kind = image::VMA_ANON_PRIVATE) {
  image::Vma* v = mm->add_vmas();
  v->set_start(start);
  v->set_end(end);
  v->set_kind(kind);
  return v;
}

TEST(RecordHugeRanges, KeepsWholeHugePagesOfPrivateAnonymousVmas) {
  image::Mm mm;
  AddVma(&mm, 0x40000000, 0x40000000 + 16 * kM);                            // anonymous: 3 huge pages
  AddVma(&mm, 0x50000000, 0x50000000 + 4 * kM, image::VMA_FILE_PRIVATE);    // a file: none
  AddVma(&mm, 0x60000000 + kM, 0x60000000 + 8 * kM);                        // starts mid-way
  const std::vector<PageRegion> regions = {
      {0x40000000, 0x40000000 + 4 * kM, kPagePresent | kPageHuge},            // two, merged
      {0x40000000 + 4 * kM, 0x40000000 + 5 * kM, kPagePresent},               // small pages
      {0x40000000 + 6 * kM, 0x40000000 + 8 * kM, kPagePresent | kPageHuge},   // one more
      {0x40000000 + 8 * kM, 0x40000000 + 10 * kM, kPagePresent | kPageHuge | kPagePfnZero},  // huge zero page
      {0x50000000, 0x50000000 + 2 * kM, kPagePresent | kPageHuge},            // not anonymous
      {0x60000000 + kM, 0x60000000 + 4 * kM, kPagePresent | kPageHuge},       // clipped to 2M..4M
  };
  RecordHugeRanges(regions, &mm);
  ASSERT_EQ(mm.huge_ranges_size(), 3);
  EXPECT_EQ(mm.huge_ranges(0).vaddr(), 0x40000000u);
  EXPECT_EQ(mm.huge_ranges(0).npages(), 4 * kM / 4096);
  EXPECT_EQ(mm.huge_ranges(1).vaddr(), 0x40000000 + 6 * kM);
  EXPECT_EQ(mm.huge_ranges(1).npages(), 2 * kM / 4096);
  EXPECT_EQ(mm.huge_ranges(2).vaddr(), 0x60000000 + 2 * kM);
  EXPECT_EQ(mm.huge_ranges(2).npages(), 2 * kM / 4096);
  EXPECT_EQ(VmasWithHugeRanges(mm), (std::vector<bool>{true, false, true}));
}

TEST(RecordHugeRanges, NothingWithoutHugeRegions) {
  image::Mm mm;
  AddVma(&mm, 0x40000000, 0x40000000 + 16 * kM);
  RecordHugeRanges({{0x40000000, 0x40000000 + 16 * kM, kPagePresent}}, &mm);
  EXPECT_EQ(mm.huge_ranges_size(), 0);
  EXPECT_EQ(VmasWithHugeRanges(mm), std::vector<bool>{false});
}

TEST(PremapAddress, CongruentToTheFinalAddressModulo2MiB) {
  image::Vma v;
  v.set_start(0x7f0000000000 + 3 * kM + 0x5000);
  v.set_end(v.start() + 8 * kM);
  for (uint64_t slot : {0x10000000ull, 0x10001000ull, 0x101ff000ull, 0x10000000ull + 3 * kM + 0x5000}) {
    const uint64_t at = PremapAddress(slot, v, true);
    EXPECT_EQ(at % kHugePageSize, v.start() % kHugePageSize) << std::hex << slot;
    EXPECT_GE(at, slot);
    EXPECT_LT(at - slot, kHugePageSize);
    EXPECT_EQ(PremapAddress(slot, v, false), slot);
  }
}

TEST(PremapSize, LeavesRoomToAlignVmasWithHugePages) {
  image::Mm mm;
  AddVma(&mm, 0x40000000, 0x40000000 + 4 * kM);
  AddVma(&mm, 0x50000000, 0x50000000 + 4 * kM);
  const uint64_t before = PremapSize(mm, VmasWithHugeRanges(mm));
  image::PageRange* r = mm.add_huge_ranges();
  r->set_vaddr(0x50000000);
  r->set_npages(512);
  EXPECT_EQ(PremapSize(mm, VmasWithHugeRanges(mm)), before + kHugePageSize);
}

// The dump's source of Mm.huge_ranges: PAGEMAP_SCAN marks a collapsed range
// huge, and RecordHugeRanges keeps exactly it.
TEST(RecordHugeRanges, FindsARangeThisProcessCollapsed) {
  void* m = ::mmap(nullptr, 8 * kM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  const uint64_t base = (reinterpret_cast<uint64_t>(m) + kHugePageSize - 1) & ~(kHugePageSize - 1);
  char* huge = reinterpret_cast<char*>(base + kHugePageSize);
  for (uint64_t a = base; a < base + 4 * kHugePageSize - kHugePageSize; a += 4096) *reinterpret_cast<char*>(a) = 1;
  if (!ThpAllowed() || ::madvise(huge, kHugePageSize, 25 /*MADV_COLLAPSE*/) != 0) {
    ::munmap(m, 8 * kM);
    GTEST_SKIP() << "no transparent huge page here (THP off, or MADV_COLLAPSE failed: " << strerror(errno) << ")";
  }
  auto scanner = PagemapScanner::Open(::getpid());
  ASSERT_TRUE(scanner.ok()) << scanner.status().ToString();
  if (scanner->method() != PagemapScanner::Method::kIoctl) {
    ::munmap(m, 8 * kM);
    GTEST_SKIP() << "no PAGEMAP_SCAN: huge pages are not recorded";
  }
  auto regions = scanner->Scan(base, base + 3 * kHugePageSize);
  ASSERT_TRUE(regions.ok()) << regions.status().ToString();
  image::Mm mm;
  AddVma(&mm, reinterpret_cast<uint64_t>(m), reinterpret_cast<uint64_t>(m) + 8 * kM);
  RecordHugeRanges(*regions, &mm);
  ::munmap(m, 8 * kM);
  ASSERT_EQ(mm.huge_ranges_size(), 1);
  EXPECT_EQ(mm.huge_ranges(0).vaddr(), base + kHugePageSize);
  EXPECT_EQ(mm.huge_ranges(0).npages(), kHugePageSize / 4096);
}

TEST(ThpEnabledText, NeverTurnsItOff) {
  EXPECT_TRUE(ThpEnabledText("always [madvise] never\n"));
  EXPECT_TRUE(ThpEnabledText("[always] madvise never\n"));
  EXPECT_FALSE(ThpEnabledText("always madvise [never]\n"));
  EXPECT_FALSE(ThpEnabledText(""));
}

TEST(VmasWithHugeRanges, OneWalkOfBothLists) {
  image::Mm mm;
  AddVma(&mm, 0x40000000, 0x40000000 + 4 * kM);                          // none
  AddVma(&mm, 0x50000000, 0x50000000 + 4 * kM);                          // only an empty range
  AddVma(&mm, 0x60000000, 0x60000000 + 4 * kM, image::VMA_FILE_PRIVATE);  // a file: never
  AddVma(&mm, 0x70000000, 0x70000000 + 8 * kM);                          // its second range
  AddVma(&mm, 0x80000000, 0x80000000 + 4 * kM);                          // none after the last range
  auto add = [&mm](uint64_t vaddr, uint64_t npages) {
    image::PageRange* r = mm.add_huge_ranges();
    r->set_vaddr(vaddr);
    r->set_npages(npages);
  };
  add(0x50000000 + 2 * kM, 0);
  add(0x60000000, 512);
  add(0x70000000 + 4 * kM, 512);
  EXPECT_EQ(VmasWithHugeRanges(mm), (std::vector<bool>{false, false, false, true, false}));
}

}  // namespace
}  // namespace cryo
