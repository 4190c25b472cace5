#include "mem/pagemap_scan.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "base/kernel_features.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = 4096;

// Pages: 0 written, 1 untouched, 2 read only (the zero page), 3-4 written,
// 5 untouched; then a shared anonymous page (file bit) and a private file
// mapping read but never written (a page-cache page: file bit).
struct Layout {
  char* anon = nullptr;
  char* shared = nullptr;
  char* file = nullptr;
  int fd = -1;
  Layout() {
    anon = static_cast<char*>(mmap(nullptr, 6 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    anon[0] = 1;
    (void)*static_cast<volatile char*>(anon + 2 * kPage);
    anon[3 * kPage] = 3;
    anon[4 * kPage] = 4;
    shared = static_cast<char*>(mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    shared[0] = 1;
    char tmpl[] = "/tmp/cryo-pagemap-test.XXXXXX";
    fd = mkstemp(tmpl);
    unlink(tmpl);
    char buf[kPage];
    memset(buf, 'f', sizeof(buf));
    if (write(fd, buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf))) abort();
    file = static_cast<char*>(mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE, fd, 0));
    (void)*static_cast<volatile char*>(file);
  }
  ~Layout() {
    munmap(anon, 6 * kPage);
    munmap(shared, kPage);
    munmap(file, kPage);
    close(fd);
  }
  uint64_t a(int page) const { return reinterpret_cast<uint64_t>(anon) + page * kPage; }
};

std::vector<PageRegion> ScanWith(PagemapScanner::Method m, uint64_t start, uint64_t end) {
  auto s = PagemapScanner::Open(getpid(), m);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  auto r = s->Scan(start, end);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<PageRegion>{};
}

// pagemap shows frames to CAP_SYS_ADMIN only, and a read fault maps the zero
// page only on kernels that have one for it (ZeroPfn()).
bool PfnVisible() { return ZeroPfn() != 0; }

TEST(PagemapRead, ReportsPresentPagesWithTheirCategories) {
  Layout l;
  auto got = ScanWith(PagemapScanner::Method::kRead, l.a(0), l.a(6));
  std::vector<PageRegion> want = {{l.a(0), l.a(1), kPagePresent}};
  if (PfnVisible()) {
    want.push_back({l.a(2), l.a(3), kPagePresent | kPagePfnZero});
    want.push_back({l.a(3), l.a(5), kPagePresent});
  } else {
    want.push_back({l.a(2), l.a(5), kPagePresent});  // a plain present page: merged with its neighbours
  }
  EXPECT_EQ(got, want);

  const uint64_t sh = reinterpret_cast<uint64_t>(l.shared), f = reinterpret_cast<uint64_t>(l.file);
  EXPECT_EQ(ScanWith(PagemapScanner::Method::kRead, sh, sh + kPage),
            (std::vector<PageRegion>{{sh, sh + kPage, kPagePresent | kPageFile}}));
  EXPECT_EQ(ScanWith(PagemapScanner::Method::kRead, f, f + kPage),
            (std::vector<PageRegion>{{f, f + kPage, kPagePresent | kPageFile}}));
}

// A page holding data is never taken for the zero page. On a kernel that
// gives each read fault a page of its own, a zero-page probe that trusted
// its one read page named a frame it then freed; the next page written here
// takes that frame from the allocator's per-CPU list, and the pagemap read
// skipped it as zeros.
TEST(PagemapRead, DataPagesAreNeverTheZeroPage) {
  (void)ZeroPfn();  // the probe first, as a dump's first scan would
  const size_t n = 64;
  char* m = static_cast<char*>(::mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  (void)::madvise(m, n * kPage, MADV_NOHUGEPAGE);
  for (size_t i = 0; i < n; ++i) m[i * kPage] = 1;
  const uint64_t a = reinterpret_cast<uint64_t>(m);
  for (const PageRegion& r : ScanWith(PagemapScanner::Method::kRead, a, a + n * kPage)) {
    EXPECT_EQ(r.categories, uint64_t{kPagePresent}) << "pages " << (r.start - a) / kPage << ".." << (r.end - a) / kPage;
  }
  ::munmap(m, n * kPage);
}

TEST(PagemapRead, AgreesWithPagemapScan) {
  Layout l;
  auto probe = PagemapScanner::Open(getpid(), PagemapScanner::Method::kIoctl);
  ASSERT_TRUE(probe.ok());
  if (!probe->Scan(l.a(0), l.a(1)).ok() || probe->method() != PagemapScanner::Method::kIoctl)
    GTEST_SKIP() << "this kernel has no PAGEMAP_SCAN: nothing to compare with";
  for (auto [s, e] : {std::pair{l.a(0), l.a(6)}, std::pair{reinterpret_cast<uint64_t>(l.shared), reinterpret_cast<uint64_t>(l.shared) + kPage},
                      std::pair{reinterpret_cast<uint64_t>(l.file), reinterpret_cast<uint64_t>(l.file) + kPage}}) {
    auto a = ScanWith(PagemapScanner::Method::kIoctl, s, e);
    auto b = ScanWith(PagemapScanner::Method::kRead, s, e);
    if (!PfnVisible())
      for (auto& r : a) r.categories &= ~uint64_t{kPagePfnZero};
    // PAGEMAP_SCAN merges neighbours with equal categories the same way.
    EXPECT_EQ(a, b);
  }
}

TEST(PagemapRead, LargeRangeSpansSeveralReads) {
  const size_t n = 70000;  // more than one read batch
  char* m = static_cast<char*>(mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  madvise(m, n * kPage, MADV_NOHUGEPAGE);
  const size_t touched[] = {0, 32767, 32768, 65536, n - 1};
  for (size_t i : touched) m[i * kPage] = 1;
  auto got = ScanWith(PagemapScanner::Method::kRead, reinterpret_cast<uint64_t>(m), reinterpret_cast<uint64_t>(m) + n * kPage);
  std::vector<PageRegion> want;
  const uint64_t base = reinterpret_cast<uint64_t>(m);
  want.push_back({base, base + kPage, kPagePresent});
  want.push_back({base + 32767 * kPage, base + 32769 * kPage, kPagePresent});  // across the batch boundary, merged
  want.push_back({base + 65536 * kPage, base + 65537 * kPage, kPagePresent});
  want.push_back({base + (n - 1) * kPage, base + n * kPage, kPagePresent});
  EXPECT_EQ(got, want);
  munmap(m, n * kPage);
}

TEST(PagemapEntry, Categories) {
  EXPECT_EQ(PagemapEntryCategories(0, 7), 0u);
  EXPECT_EQ(PagemapEntryCategories((1ull << 63) | 5, 7), kPagePresent);
  EXPECT_EQ(PagemapEntryCategories((1ull << 63) | 7, 7), kPagePresent | kPagePfnZero);
  EXPECT_EQ(PagemapEntryCategories((1ull << 63) | 0, 0), kPagePresent);  // frames hidden: never the zero page
  EXPECT_EQ(PagemapEntryCategories((1ull << 63) | (1ull << 61) | (1ull << 56), 0), kPagePresent | kPageFile);
  EXPECT_EQ(PagemapEntryCategories((1ull << 62) | 12345, 12345), kPageSwapped);  // a swap entry, not a frame
}

TEST(PretendMissing, ParsesTheList) {
  EXPECT_EQ(ParseFeatureList(""), std::vector<std::string>{});
  EXPECT_EQ(ParseFeatureList("pagemap-scan"), std::vector<std::string>{"pagemap-scan"});
  EXPECT_EQ(ParseFeatureList(" pagemap-scan , ,membarrier-registrations,"),
            (std::vector<std::string>{"pagemap-scan", "membarrier-registrations"}));
}

}  // namespace
}  // namespace cryo
