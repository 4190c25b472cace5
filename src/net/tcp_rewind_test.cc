#include "net/tcp_rewind.h"

#include <gtest/gtest.h>

#include <string>

#include "net/sockaddr_for_tests.h"
#include "net/tcp_migrate.h"

namespace cryo {
namespace {

void AddTcp(image::LoadedImage* img, int pid, int fd, uint64_t ino, const std::string& local, const std::string& peer) {
  image::Fd* f = img->processes[pid].fds.add_fds();
  f->set_fd(fd);
  f->set_kind(image::FD_TCP_SOCKET);
  f->mutable_tcp_socket()->set_ino(ino);
  f->mutable_tcp_socket()->set_family(local.size() == sizeof(sockaddr_in6) ? AF_INET6 : AF_INET);
  f->mutable_tcp_socket()->set_local(local);
  f->mutable_tcp_socket()->set_peer(peer);
}

// Both ends in the image (across processes, one of them v4-mapped on an
// IPv6 socket): rewound whole. An end whose peer is not in the image is
// named once, whichever fds share its socket.
TEST(TcpRewind, PeerOutsideIsTheOneWithoutItsOtherEnd) {
  image::LoadedImage img;
  AddTcp(&img, 10, 3, 100, V4("127.0.0.1", 4000), V4("127.0.0.1", 5000));
  AddTcp(&img, 11, 4, 101, V6("::ffff:127.0.0.1", 5000), V6("::ffff:127.0.0.1", 4000));
  AddTcp(&img, 10, 5, 102, V6("::1", 6000), V6("::1", 7000));
  AddTcp(&img, 10, 6, 103, V6("::1", 7000), V6("::1", 6000));
  EXPECT_TRUE(ConnectionsWithPeerOutside(img).empty());
  AddTcp(&img, 10, 7, 104, V4("10.0.0.1", 4000), V4("10.0.0.2", 80));
  AddTcp(&img, 11, 8, 104, V4("10.0.0.1", 4000), V4("10.0.0.2", 80));  // the same socket, inherited
  AddTcp(&img, 11, 9, 105, V6("2001:db8::1", 4001), V6("2001:db8::2", 443));
  const std::vector<std::string> out = ConnectionsWithPeerOutside(img);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], "pid 10 fd 7: TCP 10.0.0.1:4000 <-> 10.0.0.2:80");
  // An IPv6 connection is "TCP6" here as in every other message (it was "TCP" here alone).
  EXPECT_EQ(out[1], "pid 11 fd 9: TCP6 [2001:db8::1]:4001 <-> [2001:db8::2]:443");
}

// --tcp-close restores every connection reset: nothing to refuse, and no
// nft run.
TEST(TcpRewind, TcpCloseRefusesNothing) {
  image::LoadedImage img;
  AddTcp(&img, 10, 3, 100, V4("10.0.0.1", 4000), V4("10.0.0.2", 80));
  EXPECT_TRUE(CheckOutsidePeersHeld(img, /*tcp_close=*/true).ok());
}

// A migration's restore: the source holds the image's lock (no nft run, the
// table is not here); an image without a lock is refused all the same.
TEST(TcpRewind, MigrationHeldBySource) {
  image::LoadedImage img;
  AddTcp(&img, 10, 3, 100, V4("10.0.0.1", 4000), V4("10.0.0.2", 80));
  img.inventory.set_net_lock("cryo-lock-1-2-0");
  EXPECT_TRUE(CheckOutsidePeersHeld(img, false, /*held_by_source=*/true).ok());
  img.inventory.clear_net_lock();
  const Status s = CheckOutsidePeersHeld(img, false, /*held_by_source=*/true);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("--leave-running"), std::string::npos) << s.ToString();
}

// The address a migrated connection resumes with must be on this host.
TEST(TcpMigrate, AddressHere) {
  EXPECT_TRUE(CheckAddressHere(V4("127.0.0.1", 4000), "pid 1 fd 3: TCP").ok());
  const Status s = CheckAddressHere(V4("192.0.2.77", 4000), "pid 1 fd 3: TCP");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("pid 1 fd 3: TCP: its local address 192.0.2.77 is not on this host"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.ToString().find("--before-resume"), std::string::npos) << s.ToString();
}

// A leave-running image (no lock) is refused by name without nft.
TEST(TcpRewind, LeaveRunningImageRefusedByName) {
  image::LoadedImage img;
  AddTcp(&img, 10, 3, 100, V4("10.0.0.1", 4000), V4("10.0.0.2", 80));
  AddTcp(&img, 10, 4, 101, V4("10.0.0.1", 4001), V4("10.0.0.2", 80));
  const Status s = CheckOutsidePeersHeld(img, false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("pid 10 fd 3: TCP 10.0.0.1:4000 <-> 10.0.0.2:80: its peer is outside the tree"),
            std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("--leave-running"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("and 1 more"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("--tcp-close"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace cryo
