// Post-copy over a socketpair: the source serves pages of this very process
// (its /proc/PID/mem), the target fetches, commits and says ALL_IN.
#include "stream/postcopy.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace cryo::stream {
namespace {

constexpr uint64_t kPage = 4096;

struct Pair {
  std::unique_ptr<Connection> source, target;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    source = std::make_unique<Connection>(UniqueFd(sv[0]), "target", 10, /*sender=*/true);
    target = std::make_unique<Connection>(UniqueFd(sv[1]), "source", 10, /*sender=*/false);
  }
};

// 3 MiB of pages with a pattern (more than one PAGES frame per request).
struct Memory {
  size_t len = 3 << 20;
  char* p = nullptr;
  Memory() {
    p = static_cast<char*>(::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < len; ++i) p[i] = static_cast<char>(i * 7 + (i >> 12));
  }
  ~Memory() { ::munmap(p, len); }
  uint64_t addr() const { return reinterpret_cast<uint64_t>(p); }
};

TEST(PostCopyTest, ServesCommitsAndEnds) {
  Pair c;
  Memory m;
  RemoteRuns runs{{::getpid(), {{m.addr(), m.len}}}};
  bool committed = false, commit_called = false;
  Status served;
  std::thread source([&] {
    served = ServePostCopy(*c.source, runs, 10, [&] { commit_called = true; return Status::Ok(); }, &committed);
  });
  StreamPages pages(c.target.get(), 10);
  std::string got(m.len, '\0');
  ASSERT_TRUE(pages.Fetch(::getpid(), m.addr(), m.len, got.data()).ok());
  EXPECT_EQ(std::memcmp(got.data(), m.p, m.len), 0);
  std::string one(kPage, '\0');
  ASSERT_TRUE(pages.Fetch(::getpid(), m.addr() + 5 * kPage, kPage, one.data()).ok());
  EXPECT_EQ(std::memcmp(one.data(), m.p + 5 * kPage, kPage), 0);
  EXPECT_FALSE(committed);
  ASSERT_TRUE(pages.Commit().ok());
  ASSERT_TRUE(pages.AllIn().ok());
  source.join();
  EXPECT_TRUE(served.ok()) << served.ToString();
  EXPECT_TRUE(commit_called);
  EXPECT_TRUE(committed);
}

TEST(PostCopyTest, RefusesPagesOutsideTheRuns) {
  Pair c;
  Memory m;
  RemoteRuns runs{{::getpid(), {{m.addr(), 2 * kPage}}}};
  bool committed = false;
  Status served;
  std::thread source([&] { served = ServePostCopy(*c.source, runs, 10, [] { return Status::Ok(); }, &committed); });
  StreamPages pages(c.target.get(), 10);
  std::string buf(4 * kPage, '\0');
  // Beyond the run: the source ends the migration and says why.
  const Status s = pages.Fetch(::getpid(), m.addr(), 4 * kPage, buf.data());
  source.join();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("not pages the image left here"), std::string::npos) << s.ToString();
  EXPECT_FALSE(served.ok());
  EXPECT_NE(served.ToString().find("not pages the image left here"), std::string::npos) << served.ToString();
  EXPECT_FALSE(committed);
}

TEST(PostCopyTest, SourceGoneIsAnErrorNamingIt) {
  Pair c;
  c.source.reset();  // the source died
  StreamPages pages(c.target.get(), 2);
  std::string buf(kPage, '\0');
  const Status s = pages.Fetch(1234, 0x10000, kPage, buf.data());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("the migration source"), std::string::npos) << s.ToString();
  EXPECT_FALSE(pages.Commit().ok());
}

TEST(PostCopyTest, FailedCommitIsNotCommitted) {
  Pair c;
  RemoteRuns runs;
  bool committed = false;
  Status served;
  std::thread source([&] {
    served = ServePostCopy(*c.source, runs, 10, [] { return Status::Error("no EXITKILL"); }, &committed);
  });
  StreamPages pages(c.target.get(), 10);
  EXPECT_FALSE(pages.Commit().ok());
  source.join();
  EXPECT_FALSE(served.ok());
  EXPECT_FALSE(committed);
}

}  // namespace
}  // namespace cryo::stream
