// The page source of a pre-copy round (precopy_live.h): memory unmapped
// since the freeze is read as zeros and named, the rest read as it is.
#include "dump/precopy_live.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "image/format.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = image::kPageSize;

TEST(LivePageSourceTest, UnmappedPagesAreZerosAndNamed) {
  char* m = static_cast<char*>(::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  for (int i = 0; i < 4; ++i) std::memset(m + i * kPage, 'a' + i, kPage);
  const uint64_t base = reinterpret_cast<uint64_t>(m);
  // As the running program could have done after the freeze: a page
  // unmapped, another made unreadable (read through /proc/PID/mem).
  ASSERT_EQ(::munmap(m + kPage, kPage), 0);
  ASSERT_EQ(::mprotect(m + 2 * kPage, kPage, PROT_NONE), 0);
  auto src = LivePageSource::Open(::getpid());
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  const PagePiece pieces[] = {{base, 3 * kPage, 0, true}, {base + 3 * kPage, kPage, 3 * kPage, true}};
  std::vector<char> out(4 * kPage, 'x');
  Status s = (*src)->Read(pieces, 2, out.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out[0], 'a');
  EXPECT_EQ(out[kPage - 1], 'a');
  for (uint64_t i = kPage; i < 2 * kPage; ++i) ASSERT_EQ(out[i], 0) << i;
  EXPECT_EQ(out[2 * kPage], 'c');
  EXPECT_EQ(out[4 * kPage - 1], 'd');
  ASSERT_EQ((*src)->unread().size(), 1u);
  EXPECT_EQ((*src)->unread()[0].first, base + kPage);
  EXPECT_EQ((*src)->unread()[0].second, base + 2 * kPage);
  ::munmap(m, 4 * kPage);
}

// A process that exits during the copy (a short-lived child of the tree):
// the round goes on, its pages zeros and named.
TEST(LivePageSourceTest, ProcessGoneIsUnread) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto src = LivePageSource::Open(child);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  static char page[kPage];
  const PagePiece piece{reinterpret_cast<uint64_t>(page), kPage, 0, true};
  std::vector<char> out(kPage);
  out[0] = 'x';
  Status s = (*src)->Read(&piece, 1, out.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out[0], 0);
  ASSERT_EQ((*src)->unread().size(), 1u);
  EXPECT_EQ((*src)->unread()[0].first, piece.vaddr);
  EXPECT_EQ((*src)->unread()[0].second, piece.vaddr + kPage);
}

}  // namespace
}  // namespace cryo
