#include "mem/existing_pages.h"
#include "mem/pagemap_scan.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace cryo {
namespace {

constexpr uint64_t kPage = 4096;
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

// Written pages exist; pages never touched and pages only read (the zero
// page) do not: the target maps the zero page for those, on kernels that do
// (ZeroPfn(); some give a read fault a page of its own, which then exists).
TEST(ExistingPages, WrittenOnly) {
  char* m = static_cast<char*>(::mmap(nullptr, 16 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  (void)::madvise(m, 16 * kPage, MADV_NOHUGEPAGE);
  m[0] = 1;
  m[1 * kPage] = 2;
  m[9 * kPage] = 3;
  volatile char sink = m[5 * kPage];  // read: the zero page
  (void)sink;
  const uint64_t a = reinterpret_cast<uint64_t>(m);
  auto got = ExistingAnonPages(getpid(), a, a + 16 * kPage);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  Ranges want = {{a, 2 * kPage}};
  if (ZeroPfn() == 0 && geteuid() == 0) want.push_back({a + 5 * kPage, kPage});  // no zero page here
  want.push_back({a + 9 * kPage, kPage});
  EXPECT_EQ(*got, want);
  ::munmap(m, 16 * kPage);
}

// A page swapped out on the source must come over (it holds data); the zero
// page does not; a guard page in an unplanned VMA is an error.
TEST(ExistingPages, SwappedKeptZeroPageDropped) {
  const std::vector<PageRegion> regions = {
      {0x10000, 0x12000, kPagePresent | kPageWritten},
      {0x12000, 0x13000, kPageSwapped},
      {0x14000, 0x16000, kPagePresent | kPagePfnZero},
      {0x16000, 0x17000, kPagePresent},
  };
  auto got = ExistingInRegions(regions, 0x10000, 0x20000);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, (Ranges{{0x10000, 0x3000}, {0x16000, 0x1000}}));
  auto guard = ExistingInRegions({{0x10000, 0x11000, kPageGuard}}, 0x10000, 0x20000);
  EXPECT_FALSE(guard.ok());
}

}  // namespace
}  // namespace cryo
