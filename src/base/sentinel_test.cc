#include "base/sentinel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

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

}  // namespace
}  // namespace cryo
