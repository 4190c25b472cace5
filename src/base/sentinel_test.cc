#include "base/sentinel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace cryo {
namespace {

// The sentinel reads every record cryo sent, with its fd, also those still
// queued when cryo's end closes (sending is telling): here it writes each
// record's kind and payload into the fd the record carries, then "EOF".
TEST(Sentinel, RecordsAndFdsReachItAfterHangup) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  auto s = Sentinel::Start("cryo-test-sentinel", {}, [](int channel, pid_t) {
    SentinelRecord rec;
    int last = -1;
    while (ReadSentinelRecord(channel, &rec)) {
      if (!rec.fd.valid()) continue;
      const std::string line = std::string(1, rec.kind) + rec.payload + "\n";
      (void)!::write(rec.fd.get(), line.data(), line.size());
      last = ::dup(rec.fd.get());
    }
    if (last >= 0) (void)!::write(last, "EOF\n", 4);
  });
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_GT((*s)->pid(), 0);
  EXPECT_NE((*s)->pid(), ::getpid());
  ASSERT_TRUE((*s)->Send('A', "one", p[1]).ok());
  ASSERT_TRUE((*s)->Send('B', std::string(100, 'x'), p[1]).ok());
  ::close(p[1]);
  s->reset();  // hangs up and awaits its exit
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  EXPECT_EQ(got, "Aone\nB" + std::string(100, 'x') + "\nEOF\n");
}

// A record carries many fds, in order (the TCP guardian is told of every
// socket of a dump in records of kMaxSentinelFds): each pipe gets its index.
TEST(Sentinel, ARecordCarriesManyFdsInOrder) {
  constexpr int kPipes = static_cast<int>(kMaxSentinelFds);
  std::vector<int> reads, writes;
  for (int i = 0; i < kPipes; ++i) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    reads.push_back(p[0]);
    writes.push_back(p[1]);
  }
  auto s = Sentinel::Start("cryo-test-sentinel", {}, [](int channel, pid_t) {
    SentinelRecord rec;
    while (ReadSentinelRecord(channel, &rec)) {
      if (rec.kind != 'M' || !rec.fd.valid()) continue;
      (void)!::write(rec.fd.get(), "0", 1);
      for (size_t i = 0; i < rec.more_fds.size(); ++i) {
        const std::string index = std::to_string(i + 1);
        (void)!::write(rec.more_fds[i].get(), index.data(), index.size());
      }
    }
  });
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->Send('M', "many", writes).ok());
  EXPECT_FALSE((*s)->Send('M', "too many", std::vector<int>(kMaxSentinelFds + 1, writes[0])).ok());
  for (int fd : writes) ::close(fd);
  s->reset();
  for (int i = 0; i < kPipes; ++i) {
    char buf[16];
    const ssize_t n = ::read(reads[static_cast<size_t>(i)], buf, sizeof(buf));
    EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), std::to_string(i)) << "pipe " << i;
    ::close(reads[static_cast<size_t>(i)]);
  }
}

}  // namespace
}  // namespace cryo
