#include "net/net_lock.h"

#include <gtest/gtest.h>

#include "net/sockaddr_for_tests.h"

namespace cryo {
namespace {

TEST(NetLock, Names) {
  EXPECT_TRUE(IsNetLockName(NewNetLockName()));
  EXPECT_NE(NewNetLockName(), NewNetLockName());
  EXPECT_FALSE(IsNetLockName("cryo-lock-"));
  EXPECT_FALSE(IsNetLockName("filter"));
  EXPECT_FALSE(IsNetLockName("cryo-lock-1 ; flush ruleset"));
}

// Both directions of the connection, in the set both hooks' rules look up.
TEST(NetLock, ScriptDropsBothDirections) {
  const std::string s = NetLockScript("cryo-lock-1-2-0", {{V4("127.0.0.1", 1000), V4("127.0.0.2", 2000)}});
  EXPECT_NE(s.find("add table inet cryo-lock-1-2-0\n"), std::string::npos);
  for (const char* chain : {"input", "output"}) {
    const std::string rule = std::string("add rule inet cryo-lock-1-2-0 ") + chain + " ";
    EXPECT_NE(s.find(rule + "ip saddr . tcp sport . ip daddr . tcp dport @conns4 meta mark != 1668446575 drop\n"),
              std::string::npos) << s;
    EXPECT_NE(s.find(rule + "ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 meta mark != 1668446575 drop\n"),
              std::string::npos) << s;
  }
  EXPECT_NE(s.find("add element inet cryo-lock-1-2-0 conns4 { 127.0.0.1 . 1000 . 127.0.0.2 . 2000, "
                   "127.0.0.2 . 2000 . 127.0.0.1 . 1000 }\n"),
            std::string::npos) << s;
  EXPECT_EQ(s.find("add element inet cryo-lock-1-2-0 conns6"), std::string::npos) << s;  // no empty list
}

// One script for every connection of a dump: the number of rules does not
// grow with them; both ends of a connection in the tree are listed once.
TEST(NetLock, OneScriptForManyConnections) {
  std::vector<LockedConnection> conns;
  for (uint16_t i = 0; i < 50; ++i) {
    conns.push_back({V4("127.0.0.1", 1000 + i), V4("127.0.0.1", 2000)});
    conns.push_back({V4("127.0.0.1", 2000), V4("127.0.0.1", 1000 + i)});  // the other end
  }
  conns.push_back({V6("::1", 7), V6("::2", 8)});
  const std::string s = NetLockScript("cryo-lock-1-2-0", conns);
  size_t rules = 0, lines = 0, elements = 0;
  for (size_t pos = 0; (pos = s.find('\n', pos)) != std::string::npos; ++pos) ++lines;
  for (size_t pos = 0; (pos = s.find("add rule", pos)) != std::string::npos; ++pos) ++rules;
  for (size_t pos = 0; (pos = s.find(" . 127.0.0.1 . ", pos)) != std::string::npos; ++pos) ++elements;
  EXPECT_EQ(rules, 4u) << s;
  EXPECT_EQ(lines, 12u) << s;
  EXPECT_EQ(elements, 100u) << s;  // 50 connections, both directions, once each
  EXPECT_NE(s.find("add element inet cryo-lock-1-2-0 conns6 { ::1 . 7 . ::2 . 8, ::2 . 8 . ::1 . 7 }\n"),
            std::string::npos) << s;
}

// An IPv6 socket's v4-mapped addresses travel as IPv4.
TEST(NetLock, MappedAddressesAreIpv4) {
  const std::string s = NetLockScript("cryo-lock-1-2-0", {{V6("::ffff:10.0.0.1", 5), V6("::ffff:10.0.0.2", 6)}});
  EXPECT_NE(s.find("conns4 { 10.0.0.1 . 5 . 10.0.0.2 . 6, 10.0.0.2 . 6 . 10.0.0.1 . 5 }"), std::string::npos) << s;
  const std::string s6 = NetLockScript("cryo-lock-1-2-0", {{V6("::1", 5), V6("::1", 6)}});
  EXPECT_NE(s6.find("conns6 { ::1 . 5 . ::1 . 6, ::1 . 6 . ::1 . 5 }"), std::string::npos) << s6;
}

}  // namespace
}  // namespace cryo
