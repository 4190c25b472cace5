#include "mem/cow_share.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace cryo {
namespace {

constexpr uint64_t kPage = 4096;

image::PageRange Range(uint64_t a, uint64_t n) {
  image::PageRange r;
  r.set_vaddr(a);
  r.set_npages(n);
  return r;
}

TEST(WithoutRangesTest, CutsSkippedPagesOut) {
  std::vector<PageRegion> regions = {{0x1000, 0x9000, 8}, {0x10000, 0x12000, 8}};
  auto out = WithoutRanges(regions, {Range(0x2000, 2), Range(0x8000, 10)});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].start, 0x1000u);
  EXPECT_EQ(out[0].end, 0x2000u);
  EXPECT_EQ(out[1].start, 0x4000u);
  EXPECT_EQ(out[1].end, 0x8000u);
}

TEST(WithoutRangesTest, NothingToSkip) {
  std::vector<PageRegion> regions = {{0x1000, 0x3000, 8}};
  auto out = WithoutRanges(regions, {});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].end, 0x3000u);
  EXPECT_TRUE(WithoutRanges(regions, {Range(0x1000, 2)}).empty());
}

// A real fork: the child writes one page; every other page stays shared.
TEST(FindInheritedPagesTest, FindsPagesStillSharedAfterFork) {
  const size_t n = 16;
  char* m = static_cast<char*>(mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  for (size_t i = 0; i < n; ++i) memset(m + i * kPage, static_cast<int>(i + 1), kPage);
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  if (child == 0) {
    m[5 * kPage] = 42;  // breaks the sharing of page 5
    char c = 'r';
    if (write(go[1], &c, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(go[0], &c, 1), 1);
  image::Mm mm;
  image::Vma* v = mm.add_vmas();
  v->set_kind(image::VMA_ANON_PRIVATE);
  v->set_start(reinterpret_cast<uint64_t>(m));
  v->set_end(reinterpret_cast<uint64_t>(m) + n * kPage);
  auto r = FindInheritedPages(child, mm, getpid(), mm);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].vaddr(), v->start());
  EXPECT_EQ((*r)[0].npages(), 5u);
  EXPECT_EQ((*r)[1].vaddr(), v->start() + 6 * kPage);
  EXPECT_EQ((*r)[1].npages(), n - 6);
  munmap(m, n * kPage);
}

}  // namespace
}  // namespace cryo
