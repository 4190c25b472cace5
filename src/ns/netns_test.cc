// A network namespace dumped from a child that made it (netns.h): lo up, an
// address, a route and a sysctl are in the record, nothing else is (the
// sysctls are only those that differ from a fresh namespace's); then a
// link cryo does not restore is refused by name.
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <gtest/gtest.h>

#include "ns/netns.h"

namespace cryo::ns {
namespace {

pid_t StartNetnsChild(int sync_fd, const char* script) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (::unshare(CLONE_NEWNET) != 0) ::_exit(2);
  if (std::system(script) != 0) ::_exit(3);
  if (::write(sync_fd, "r", 1) != 1) ::_exit(5);
  for (;;) ::pause();
}

struct Child {
  explicit Child(const char* script) {
    int p[2];
    if (::pipe(p) != 0) return;
    pid = StartNetnsChild(p[1], script);
    ::close(p[1]);  // EOF if the child fails
    char c;
    ready = ::read(p[0], &c, 1) == 1;
    ::close(p[0]);
  }
  ~Child() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  pid_t pid = -1;
  bool ready = false;
};

TEST(Netns, DumpsWhatDiffersFromAFreshNamespace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare)";
  Child child("ip link set lo up && ip addr add 10.66.0.1/24 dev lo && ip route add 10.67.0.0/16 dev lo && "
              "echo 44 > /proc/sys/net/ipv4/ip_default_ttl");
  ASSERT_TRUE(child.ready);
  image::NetNamespace net;
  Status st = DumpNetNamespace(child.pid, &net);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(net.links_size(), 1);
  EXPECT_EQ(net.links(0).name(), "lo");
  EXPECT_EQ(net.links(0).flags(), 1u);  // IFF_UP
  bool found = false;
  for (const image::NetAddress& a : net.addresses()) found |= a.local() == std::string("\x0a\x42\x00\x01", 4);
  EXPECT_TRUE(found);
  ASSERT_EQ(net.routes_size(), 1);
  EXPECT_EQ(net.routes(0).dst_len(), 16u);
  ASSERT_EQ(net.sysctls_size(), 1) << net.DebugString();
  EXPECT_EQ(net.sysctls(0).path(), "net/ipv4/ip_default_ttl");
  EXPECT_EQ(net.sysctls(0).value(), "44");
  EXPECT_TRUE(net.nft_ruleset().empty());
}

TEST(Netns, RefusesALinkByName) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare)";
  Child child("ip link add cryotest0 type bridge");
  ASSERT_TRUE(child.ready);
  image::NetNamespace net;
  Status st = DumpNetNamespace(child.pid, &net);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("link cryotest0 (kind bridge)"), std::string::npos) << st.ToString();
}

// A veth pair is restored only with its other end outside the namespace.
TEST(Netns, RefusesAVethPairInsideByName) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare)";
  Child child("ip link add cryotest0 type veth peer name cryotest1");
  ASSERT_TRUE(child.ready);
  image::NetNamespace net;
  Status st = DumpNetNamespace(child.pid, &net);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("has its other end in the tree's namespace too"), std::string::npos)
      << st.ToString();
}

}  // namespace
}  // namespace cryo::ns
