#include "net/udp_queue.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cstring>

#include "base/kernel_features.h"
#include "base/unique_fd.h"
#include "bpf/udp_queue_count.h"

namespace cryo {
namespace {

// A socket bound on 127.0.0.1 with `datagrams` queued on it.
UniqueFd Queued(std::initializer_list<const char*> datagrams) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  EXPECT_EQ(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  UniqueFd out(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  for (const char* d : datagrams)
    EXPECT_EQ(::sendto(out.get(), d, std::strlen(d), 0, reinterpret_cast<sockaddr*>(&a), len),
              static_cast<ssize_t>(std::strlen(d)));
  return s;
}

std::string Datas(const UdpQueue& q) {
  std::string s;
  for (const image::UdpDatagram& d : q) s += "[" + d.data() + "]";
  return s;
}

TEST(PeekUdpQueue, SeesAFreshQueueWholeThenRefusesTheEmptyDatagramItMarked) {
  ASSERT_TRUE(bpf::UdpQueueCountAvailable().ok()) << bpf::UdpQueueCountAvailable().ToString();
  UniqueFd s = Queued({"a", "", "b"});
  UdpQueue q;
  Status st = PeekUdpQueue(s.get(), "sock", false, &q);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Datas(q), "[a][][b]");
  // The peek marked the empty datagram: every later peek passes it over.
  st = PeekUdpQueue(s.get(), "sock", false, &q);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("sock: its receive queue holds 1 datagrams the kernel hides from peeking"),
            std::string::npos) << st.ToString();
  // Taking them all leaves an empty queue, which needs no count.
  char buf[8];
  for (int i = 0; i < 3; ++i) ASSERT_GE(::recv(s.get(), buf, sizeof(buf), MSG_DONTWAIT), 0);
  ::setenv(kPretendMissingEnv, bpf::kUdpIterFeature, 1);
  st = PeekUdpQueue(s.get(), "sock", false, &q);
  ::unsetenv(kPretendMissingEnv);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(q.empty());
}

TEST(PeekUdpQueue, WithoutTheCountAQueueIsRefusedUnlessUnverified) {
  UniqueFd s = Queued({"a", "", "b"});
  UdpQueue q;
  ::setenv(kPretendMissingEnv, bpf::kUdpIterFeature, 1);
  const Status refused = PeekUdpQueue(s.get(), "sock", false, &q);
  const Status unverified = PeekUdpQueue(s.get(), "sock", true, &q);
  ::unsetenv(kPretendMissingEnv);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.ToString().find("sock: cannot count the datagrams of its receive queue exactly: BPF iterator "
                                    "unavailable (taken as missing"),
            std::string::npos) << refused.ToString();
  ASSERT_TRUE(unverified.ok()) << unverified.ToString();
  EXPECT_EQ(Datas(q), "[a][b]") << "the first peek hid the empty datagram from the second: the risk the option takes";
}

}  // namespace
}  // namespace cryo
