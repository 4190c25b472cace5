// Post-copy over a socketpair: the source serves pages of this very process
// (its /proc/PID/mem), the target fetches, commits and says ALL_IN.
#include "stream/postcopy.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

// Pipelined: several requests outstanding, their pages collected in the
// order asked (a request over 1 MiB in several pieces), the tags kept.
TEST(PostCopyTest, PipelinedRequestsArriveInOrder) {
  Pair c;
  Memory m;
  RemoteRuns runs{{::getpid(), {{m.addr(), m.len}}}};
  bool committed = false;
  Status served;
  std::thread source([&] { served = ServePostCopy(*c.source, runs, 10, [] { return Status::Ok(); }, &committed); });
  StreamPages pages(c.target.get(), 10);
  const std::vector<std::pair<uint64_t, uint64_t>> asked = {{16 * kPage, 16 * kPage}, {0, (1 << 20) + 8 * kPage},
                                                            {100 * kPage, kPage}};
  for (size_t i = 0; i < asked.size(); ++i)
    ASSERT_TRUE(pages.Request(::getpid(), m.addr() + asked[i].first, asked[i].second, 7 + i).ok());
  EXPECT_EQ(pages.Outstanding(), 16 * kPage + (1 << 20) + 8 * kPage + kPage);
  std::vector<RemotePageSource::Arrival> got;
  for (int i = 0; i < 1000 && pages.Outstanding() > 0; ++i) {
    struct pollfd p = {pages.PollFd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    ASSERT_TRUE(pages.Collect(&got).ok());
  }
  ASSERT_EQ(pages.Outstanding(), 0u);
  std::vector<uint64_t> done(asked.size(), 0);
  size_t last = 0;
  for (const auto& a : got) {
    ASSERT_GE(a.tag, 7u);
    const size_t i = a.tag - 7;
    ASSERT_LT(i, asked.size());
    EXPECT_GE(i, last) << "answers out of order";
    last = i;
    EXPECT_EQ(a.pid, ::getpid());
    EXPECT_EQ(a.vaddr, m.addr() + asked[i].first + done[i]);
    EXPECT_EQ(std::memcmp(a.bytes(), m.p + (a.vaddr - m.addr()), a.len()), 0);
    done[i] += a.len();
  }
  for (size_t i = 0; i < asked.size(); ++i) EXPECT_EQ(done[i], asked[i].second);
  ASSERT_TRUE(pages.Commit().ok());
  ASSERT_TRUE(pages.AllIn().ok());
  source.join();
  EXPECT_TRUE(served.ok()) << served.ToString();
}

// READY while a request is outstanding: its pages come before GO and stay
// for Collect.
TEST(PostCopyTest, CommitKeepsAnswersForCollect) {
  Pair c;
  Memory m;
  RemoteRuns runs{{::getpid(), {{m.addr(), m.len}}}};
  bool committed = false;
  Status served;
  std::thread source([&] { served = ServePostCopy(*c.source, runs, 10, [] { return Status::Ok(); }, &committed); });
  StreamPages pages(c.target.get(), 10);
  ASSERT_TRUE(pages.Request(::getpid(), m.addr() + 3 * kPage, 2 * kPage, 1).ok());
  ASSERT_TRUE(pages.Commit().ok());
  EXPECT_EQ(pages.Outstanding(), 0u);
  std::vector<RemotePageSource::Arrival> got;
  ASSERT_TRUE(pages.Collect(&got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].vaddr, m.addr() + 3 * kPage);
  ASSERT_EQ(got[0].len(), 2 * kPage);
  EXPECT_EQ(std::memcmp(got[0].bytes(), m.p + 3 * kPage, 2 * kPage), 0);
  ASSERT_TRUE(pages.AllIn().ok());
  source.join();
  EXPECT_TRUE(served.ok()) << served.ToString();
}

// A source process whose address space went after its memory file was
// opened (it was killed): the file reads 0 bytes, which is said as such (no
// errno is set then, a stale one must not be shown).
TEST(PostCopyTest, SourceMemoryGoneIsSaid) {
  Pair c;
  Memory m;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    _exit(0);
  }
  RemoteRuns runs{{child, {{m.addr(), m.len}}}};
  bool committed = false;
  Status served;
  std::thread source([&] {
    served = ServePostCopy(*c.source, runs, 10, [] { return Status::Ok(); }, &committed);
    c.source.reset();  // as the source cryo exits (the socketpair blocks: no timeout)
  });
  StreamPages pages(c.target.get(), 10);
  std::string buf(kPage, '\0');
  ASSERT_TRUE(pages.Fetch(child, m.addr(), kPage, buf.data()).ok());  // its memory file opened
  EXPECT_EQ(std::memcmp(buf.data(), m.p, kPage), 0);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  siginfo_t si;
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &si, WEXITED | WNOWAIT), 0);  // gone, not reaped
  errno = 0;
  const Status s = pages.Fetch(child, m.addr() + kPage, kPage, buf.data());
  source.join();
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("pid " + std::to_string(child)), std::string::npos) << s.ToString();
  EXPECT_FALSE(served.ok());
  EXPECT_NE(served.ToString().find("read nothing"), std::string::npos) << served.ToString();
  EXPECT_EQ(served.ToString().find("errno"), std::string::npos) << served.ToString();
}

}  // namespace
}  // namespace cryo::stream
