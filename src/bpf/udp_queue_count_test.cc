#include "bpf/udp_queue_count.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "base/kernel_features.h"
#include "base/unique_fd.h"

namespace cryo::bpf {
namespace {

TEST(UdpQueueRecords, ParsesWholeRecords) {
  char bytes[32] = {};
  const uint64_t cookie = 0x1122334455667788ull;
  const uint32_t rq = 3, reader = 4;
  std::memcpy(bytes + 16, &cookie, 8);
  std::memcpy(bytes + 24, &rq, 4);
  std::memcpy(bytes + 28, &reader, 4);
  Result<std::vector<UdpQueueLengths>> r = ParseUdpQueueRecords(std::string_view(bytes, sizeof(bytes)));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].cookie, 0u);
  EXPECT_EQ((*r)[1].cookie, cookie);
  EXPECT_EQ((*r)[1].receive_queue, 3u);
  EXPECT_EQ((*r)[1].reader_queue, 4u);
  EXPECT_FALSE(ParseUdpQueueRecords(std::string_view(bytes, 20)).ok());
  EXPECT_TRUE(ParseUdpQueueRecords("").ok());
}

struct Bound {
  UniqueFd fd;
  sockaddr_in addr{};
};

Bound BoundSocket(uint32_t address) {
  Bound b;
  b.fd.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  b.addr.sin_family = AF_INET;
  b.addr.sin_addr.s_addr = htonl(address);
  socklen_t len = sizeof(b.addr);
  if (::bind(b.fd.get(), reinterpret_cast<sockaddr*>(&b.addr), len) != 0 ||
      ::getsockname(b.fd.get(), reinterpret_cast<sockaddr*>(&b.addr), &len) != 0)
    b.fd.reset();
  return b;
}

// The gap the count closes: an empty datagram the program peeked at is
// passed over by a peek from an offset, the kernel still holds it.
TEST(CountUdpDatagrams, CountsAnEmptyDatagramPeekingPassesOver) {
  ASSERT_TRUE(UdpQueueCountAvailable().ok()) << UdpQueueCountAvailable().ToString();
  Bound s = BoundSocket(INADDR_LOOPBACK);
  ASSERT_TRUE(s.fd.valid());
  Result<uint32_t> n = CountUdpDatagrams(s.fd.get());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
  UniqueFd out(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  for (const char* d : {"a", "", "b"})
    ASSERT_EQ(::sendto(out.get(), d, std::strlen(d), 0, reinterpret_cast<sockaddr*>(&s.addr), sizeof(s.addr)),
              static_cast<ssize_t>(std::strlen(d)));
  n = CountUdpDatagrams(s.fd.get());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 3u);
  char buf[8];
  ASSERT_EQ(::recv(s.fd.get(), buf, sizeof(buf), MSG_DONTWAIT), 1);        // "a", taken: into reader_queue's count
  ASSERT_EQ(::recv(s.fd.get(), buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT), 0);  // "", marked peeked
  const int zero = 0;
  ASSERT_EQ(::setsockopt(s.fd.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)), 0);
  ASSERT_EQ(::recv(s.fd.get(), buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT), 1);  // "b": the peek passes "" over
  ASSERT_EQ(::recv(s.fd.get(), buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT), -1);
  n = CountUdpDatagrams(s.fd.get());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2u);
}

// The iterator walks the network namespace of the thread that creates it:
// a socket of another namespace is counted there.
TEST(CountUdpDatagrams, CountsASocketOfAnotherNetworkNamespace) {
  Bound s;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) == 0) s = BoundSocket(INADDR_ANY);
  });
  t.join();
  ASSERT_TRUE(s.fd.valid()) << "a bound socket in a new network namespace";
  Result<uint32_t> n = CountUdpDatagrams(s.fd.get());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
}

TEST(CountUdpDatagrams, PretendMissingMakesItUnavailable) {
  ::setenv(kPretendMissingEnv, kUdpIterFeature, 1);
  Bound s = BoundSocket(INADDR_LOOPBACK);
  Result<uint32_t> n = CountUdpDatagrams(s.fd.get());
  ::unsetenv(kPretendMissingEnv);
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().ToString().find("taken as missing"), std::string::npos) << n.status().ToString();
}

TEST(CountUdpDatagrams, AnUnboundSocketIsNotMet) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  Result<uint32_t> n = CountUdpDatagrams(s.get());
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().ToString().find("did not meet"), std::string::npos) << n.status().ToString();
}

}  // namespace
}  // namespace cryo::bpf
