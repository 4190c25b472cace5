// What describing a process's sockets costs in the kernel, per socket: the
// dump of a process with many connections must take each fd once, ask
// sock_diag once per family (not once per socket) on one netlink socket, and
// compare options with one new socket per kind (issue 14). Counted, not
// timed (speed is measured in bench/bench_tcp.py).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "files/fd_table.h"
#include "net/sock_diag.h"
#include "net/socket_options.h"
#include "net/tcp_session.h"
#include "net/unix_diag.h"

namespace cryo {
namespace {

constexpr int kConnections = 20;

// kConnections established loopback connections, both ends here, with bytes
// queued each way.
struct Connections {
  UniqueFd listener;
  std::vector<UniqueFd> ends;
  explicit Connections(int n) {
    listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::listen(listener.get(), n), 0);
    EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    for (int i = 0; i < n; ++i) {
      UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
      UniqueFd s(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      EXPECT_TRUE(s.valid());
      EXPECT_EQ(::send(c.get(), "ping", 4, 0), 4);
      EXPECT_EQ(::send(s.get(), "pong", 4, 0), 4);
      ends.push_back(std::move(c));
      ends.push_back(std::move(s));
    }
    listener.reset();
  }
};

struct Counts {
  uint64_t taken = FdsTaken(), opened = SockDiagSocketsOpened(), exchanges = SockDiagExchanges(),
           made = OptionSocketsMade();
};

// Describes each of `fds` (this process's) as a dump would, in a TCP dump
// session (the connections are only deferred: nothing is locked or put in
// repair mode).
void DescribeAll(const std::vector<UniqueFd>& fds, image::FdTable* table, const DumpScope* scope = nullptr) {
  UniqueFd self(static_cast<int>(syscall(SYS_pidfd_open, ::getpid(), 0)));
  ASSERT_TRUE(self.valid());
  std::set<std::string> features;
  for (const UniqueFd& fd : fds) {
    FdSource src;
    src.pid = ::getpid();
    src.fd = fd.get();
    src.pidfd = self.get();
    src.scope = scope;
    Status st = DescribeFd(src, table, &features);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
}

TEST(SocketDumpCost, EachSocketTakenOnceOneDiagDumpOneSocketForOptions) {
  Connections c(kConnections + 1);
  std::vector<UniqueFd> warm;
  warm.push_back(std::move(c.ends[0]));
  warm.push_back(std::move(c.ends[1]));
  c.ends.erase(c.ends.begin(), c.ends.begin() + 2);
  image::FdTable table;
  TcpDumpSession session;
  // The first connection pays for its kind (a new socket's defaults, a
  // probe per option value, the family's inet_diag dump).
  DescribeAll(warm, &table);
  const Counts before;
  table.Clear();
  DescribeAll(c.ends, &table);
  const Counts after;
  ASSERT_EQ(table.fds_size(), 2 * kConnections);
  for (const image::Fd& f : table.fds()) EXPECT_EQ(f.kind(), image::FD_TCP_SOCKET);
  // One pidfd_getfd per fd: shared by the netns check, every handler's
  // Handles() and Dump(), and the owner.
  EXPECT_EQ(after.taken - before.taken, 2u * kConnections);
  // One inet_diag dump for every connection of the family, on one netlink
  // socket kept for the thread.
  EXPECT_LE(after.exchanges - before.exchanges, 1u);
  EXPECT_LE(after.opened - before.opened, 1u);
  // Options compared with one new socket of the kind, and each value that
  // differs from it probed once (the buffer sizes loopback connections
  // autotune alike): far fewer than one per socket.
  EXPECT_LT(after.made - before.made, static_cast<uint64_t>(kConnections) / 2);
}

// cryo's open fds (/proc/self/fd entries).
size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Describing holds no fd per connection: the deferred connections are taken
// again when the tree is held (TcpDumpSession::ReadDeferred), so a dump of
// N sockets holds N fds, not 2N (EMFILE at ~9,000 connections under a hard
// limit of 20,000; base/fd_limit.h).
TEST(SocketDumpCost, DescribingHoldsNoFdPerSocket) {
  Connections c(kConnections + 1);
  std::vector<UniqueFd> warm;
  warm.push_back(std::move(c.ends[0]));
  warm.push_back(std::move(c.ends[1]));
  c.ends.erase(c.ends.begin(), c.ends.begin() + 2);
  image::FdTable table;
  TcpDumpSession session;
  DescribeAll(warm, &table);  // the netlink socket kept for the thread, ...
  const size_t before = OpenFds();
  DescribeAll(c.ends, &table);
  ASSERT_EQ(table.fds_size(), 2 * kConnections + 2);
  EXPECT_TRUE(session.has_deferred());
  EXPECT_LE(OpenFds(), before + 2) << "fds held after describing " << 2 * kConnections << " sockets";
}

TEST(SocketDumpCost, SecondDescriptionOfTheSameKindMakesNoSocket) {
  Connections c(2);
  image::FdTable table;
  TcpDumpSession session;
  std::vector<UniqueFd> first;
  first.push_back(std::move(c.ends[0]));
  first.push_back(std::move(c.ends[1]));
  DescribeAll(first, &table);
  const Counts before;
  std::vector<UniqueFd> second;
  second.push_back(std::move(c.ends[2]));
  second.push_back(std::move(c.ends[3]));
  DescribeAll(second, &table);
  const Counts after;
  EXPECT_EQ(after.made, before.made);
  EXPECT_EQ(after.opened, before.opened);
  // The records of both connections carry the same options.
  ASSERT_EQ(table.fds_size(), 4);
  EXPECT_EQ(table.fds(0).tcp_socket().options_size(), table.fds(2).tcp_socket().options_size());
}

// kConnections bound UDP sockets of one family (one of them shut down for
// writing, which only inet_diag tells) are described with one inet_diag
// dump, not one each (each lists every UDP socket of the namespace); a
// socket bound after that dump is still found.
TEST(SocketDumpCost, UdpSocketsOneDiagDumpPerFamily) {
  std::vector<UniqueFd> socks;
  for (int i = 0; i < kConnections; ++i) {
    UniqueFd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(u.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socks.push_back(std::move(u));
  }
  // shutdown(2) of a datagram socket needs a peer (ENOTCONN otherwise).
  sockaddr_in peer{};
  socklen_t plen = sizeof(peer);
  ASSERT_EQ(::getsockname(socks[4].get(), reinterpret_cast<sockaddr*>(&peer), &plen), 0);
  ASSERT_EQ(::connect(socks[3].get(), reinterpret_cast<sockaddr*>(&peer), plen), 0);
  ASSERT_EQ(::shutdown(socks[3].get(), SHUT_WR), 0);
  DumpScope scope;
  scope.pids.insert(::getpid());
  image::FdTable table;
  const uint64_t before = InetDiagDumps();
  DescribeAll(socks, &table, &scope);
  EXPECT_EQ(InetDiagDumps() - before, 1u);
  ASSERT_EQ(table.fds_size(), kConnections);
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_EQ(table.fds(i).kind(), image::FD_UDP_SOCKET);
    EXPECT_EQ(table.fds(i).udp_socket().shutdown(), i == 3 ? 2u : 0u) << "socket " << i;
  }
  // Bound since the snapshot: asked about on its own.
  UniqueFd late(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(late.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::connect(late.get(), reinterpret_cast<sockaddr*>(&peer), plen), 0);
  ASSERT_EQ(::shutdown(late.get(), SHUT_WR), 0);
  std::vector<UniqueFd> one;
  one.push_back(std::move(late));
  table.Clear();
  DescribeAll(one, &table, &scope);
  ASSERT_EQ(table.fds_size(), 1);
  EXPECT_EQ(table.fds(0).udp_socket().shutdown(), 2u);
}

// Questions about single sockets (UNIX ones here) share one netlink
// socket per thread.
TEST(SocketDumpCost, QueriesShareOneNetlinkSocket) {
  std::vector<UniqueFd> ends;
  for (int i = 0; i < kConnections; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ends.emplace_back(sv[0]);
    ends.emplace_back(sv[1]);
  }
  (void)QueryUnixSocket(0);  // a first exchange on this thread (an error answer ends cleanly too)
  const Counts before;
  for (size_t i = 0; i < ends.size(); i += 2) {
    struct stat st{}, peer{};
    ASSERT_EQ(::fstat(ends[i].get(), &st), 0);
    ASSERT_EQ(::fstat(ends[i + 1].get(), &peer), 0);
    Result<UnixSocketDiag> d = QueryUnixSocket(st.st_ino);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->peer_ino, peer.st_ino);
  }
  const Counts after;
  EXPECT_EQ(after.exchanges - before.exchanges, static_cast<uint64_t>(kConnections));
  EXPECT_LE(after.opened - before.opened, 1u);
}

// A dump whose reader stopped half-way leaves answers unread: that netlink
// socket must not answer the next query (which would read the old dump's
// answers as its own).
TEST(SocketDumpCost, AbandonedDiagDumpIsNotReused) {
  std::vector<UniqueFd> pairs;
  for (int i = 0; i < 200; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pairs.emplace_back(sv[0]);
    pairs.emplace_back(sv[1]);
  }
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_PEER;
  int seen = 0;
  ASSERT_TRUE(SockDiagDump(&msg, sizeof(msg), "test dump", [&](const nlmsghdr*) { return ++seen == 1; }).ok());
  ASSERT_EQ(seen, 1);
  for (size_t i = 0; i < 20; ++i) {
    struct stat st{}, peer{};
    ASSERT_EQ(::fstat(pairs[2 * i].get(), &st), 0);
    ASSERT_EQ(::fstat(pairs[2 * i + 1].get(), &peer), 0);
    Result<UnixSocketDiag> d = QueryUnixSocket(st.st_ino);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->peer_ino, peer.st_ino) << "socket " << i;
  }
}

}  // namespace
}  // namespace cryo
