#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/cow_copy.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = image::kPageSize;

// The kernel behaviour cow_discard.cc stands on: madvise(MADV_DONTNEED) of a
// VMA registered with a userfaultfd asking for UFFD_EVENT_REMOVE waits for
// the event to be read, and meanwhile its thread's syscall file shows the
// range (PendingDiscards); once read, it is gone from there.
TEST(CowDiscardTest, AWaitingDiscardIsSeenBeforeItsEventIsRead) {
  const size_t len = 16 * kPage;
  char* p = static_cast<char*>(::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  memset(p, 7, len);
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  ASSERT_TRUE(uffd.valid()) << strerror(errno);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMOVE;
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_API, &api), 0) << strerror(errno);
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(p), len};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_REGISTER, &reg), 0) << strerror(errno);

  std::atomic<int> rc{1};
  std::thread t([&] { rc = ::madvise(p + kPage, 4 * kPage + 100, MADV_DONTNEED); });
  pollfd pfd{uffd.get(), POLLIN, 0};
  const int ready = ::poll(&pfd, 1, 10000);  // the event is queued
  auto pending = PendingDiscards(::getpid());
  uffd_msg msg{};
  const ssize_t got = ready == 1 ? ::read(uffd.get(), &msg, sizeof(msg)) : -1;
  if (got != sizeof(msg)) uffd.reset();  // (closing lets the caller go too)
  t.join();
  uffd.reset();  // (a missing page of a registered VMA would wait for it)
  ASSERT_EQ(ready, 1) << "no UFFD_EVENT_REMOVE in 10 s";
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof(msg)));
  EXPECT_EQ(msg.event, UFFD_EVENT_REMOVE);
  EXPECT_EQ(rc.load(), 0);
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  const uint64_t start = reinterpret_cast<uint64_t>(p) + kPage;
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].first, start);
  EXPECT_EQ((*pending)[0].second, start + 5 * kPage);  // rounded up to whole pages
  auto after = PendingDiscards(::getpid());
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
  EXPECT_EQ(p[kPage], 0);  // discarded once let go
  EXPECT_EQ(p[0], 7);
  ::munmap(p, len);
}

}  // namespace
}  // namespace cryo
