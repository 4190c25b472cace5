#include "net/net_lock.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>

namespace cryo {
namespace {

std::string V4(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return std::string(reinterpret_cast<const char*>(&a), sizeof(a));
}

std::string V6(const char* ip, uint16_t port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return std::string(reinterpret_cast<const char*>(&a), sizeof(a));
}

TEST(NetLock, Names) {
  EXPECT_TRUE(IsNetLockName(NewNetLockName()));
  EXPECT_NE(NewNetLockName(), NewNetLockName());
  EXPECT_FALSE(IsNetLockName("cryo-lock-"));
  EXPECT_FALSE(IsNetLockName("filter"));
  EXPECT_FALSE(IsNetLockName("cryo-lock-1 ; flush ruleset"));
}

// Both directions of the connection, in both hooks.
TEST(NetLock, ScriptDropsBothDirections) {
  const std::string s = NetLockScript("cryo-lock-1-2-0", {{V4("127.0.0.1", 1000), V4("127.0.0.2", 2000)}});
  EXPECT_NE(s.find("add table inet cryo-lock-1-2-0\n"), std::string::npos);
  for (const char* chain : {"input", "output"}) {
    const std::string rule = std::string("add rule inet cryo-lock-1-2-0 ") + chain + " ";
    EXPECT_NE(s.find(rule + "ip saddr 127.0.0.1 tcp sport 1000 ip daddr 127.0.0.2 tcp dport 2000 meta mark != 1668446575 drop\n"), std::string::npos) << s;
    EXPECT_NE(s.find(rule + "ip saddr 127.0.0.2 tcp sport 2000 ip daddr 127.0.0.1 tcp dport 1000 meta mark != 1668446575 drop\n"), std::string::npos) << s;
  }
}

// An IPv6 socket's v4-mapped addresses travel as IPv4.
TEST(NetLock, MappedAddressesAreIpv4) {
  const std::string s = NetLockScript("cryo-lock-1-2-0", {{V6("::ffff:10.0.0.1", 5), V6("::ffff:10.0.0.2", 6)}});
  EXPECT_NE(s.find("ip saddr 10.0.0.1 tcp sport 5 ip daddr 10.0.0.2 tcp dport 6 meta mark != 1668446575 drop"), std::string::npos) << s;
  const std::string s6 = NetLockScript("cryo-lock-1-2-0", {{V6("::1", 5), V6("::1", 6)}});
  EXPECT_NE(s6.find("ip6 saddr ::1 tcp sport 5 ip6 daddr ::1 tcp dport 6 meta mark != 1668446575 drop"), std::string::npos) << s6;
}

}  // namespace
}  // namespace cryo
