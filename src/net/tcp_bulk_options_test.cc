// The TCP iterator (bpf/tcp_options.h) must read exactly what getsockopt(2)
// reads: each option it reads, on connections with every such option set to
// something other than a new socket's value and on connections left as
// they are, IPv4 and IPv6; and the options a dump records are the same with
// and without it.
#include "net/tcp_bulk_options.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/kernel_features.h"
#include "base/unique_fd.h"
#include "bpf/tcp_options.h"
#include "net/socket_options.h"

namespace cryo {
namespace {

struct Connection {
  UniqueFd client, server;
};

Connection Connect(int family) {
  Connection c;
  UniqueFd l(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage a{};
  socklen_t len;
  if (family == AF_INET) {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&a);
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a4);
  } else {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&a);
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
    len = sizeof(*a6);
  }
  EXPECT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  EXPECT_EQ(::listen(l.get(), 4), 0);
  EXPECT_EQ(::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  c.client.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(c.client.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  c.server.reset(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(c.server.valid());
  return c;
}

void SetInt(int fd, int level, int name, int v) {
  ASSERT_EQ(::setsockopt(fd, level, name, &v, sizeof(v)), 0) << "level " << level << " option " << name;
}

// Every option the iterator reads set to a value no new socket has.
void SetEveryBulkOption(int fd, int family) {
  SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  SetInt(fd, SOL_SOCKET, SO_SNDBUF, 65536);
  SetInt(fd, SOL_SOCKET, SO_RCVBUF, 70000);
  SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  SetInt(fd, SOL_SOCKET, SO_PRIORITY, 5);
  SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  SetInt(fd, SOL_SOCKET, SO_RCVLOWAT, 10);
  SetInt(fd, SOL_SOCKET, SO_MARK, 7);
  SetInt(fd, SOL_SOCKET, 74 /*SO_TXREHASH*/, 1);
  SetInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 100);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 20);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, 4);
  SetInt(fd, IPPROTO_TCP, TCP_SYNCNT, 3);
  SetInt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, 40000);
  SetInt(fd, IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1);
  SetInt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 5000);
  SetInt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 12345);
  SetInt(fd, IPPROTO_TCP, TCP_SAVE_SYN, 1);
  ASSERT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4), 0);
  SetInt(fd, IPPROTO_IP, IP_TOS, 0x10);
  if (family == AF_INET6) {
    SetInt(fd, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
    SetInt(fd, IPPROTO_IPV6, IPV6_AUTOFLOWLABEL, 0);
  }
}

struct Sockets {
  std::vector<Connection> conns;
  std::vector<int> fds;      // every end
  std::vector<int> families;
  Sockets() {
    for (int family : {AF_INET, AF_INET6}) {
      Connection plain = Connect(family);
      Connection set = Connect(family);
      SetEveryBulkOption(set.client.get(), family);
      for (Connection* c : {&plain, &set}) {
        fds.push_back(c->client.get());
        fds.push_back(c->server.get());
        families.push_back(family);
        families.push_back(family);
      }
      conns.push_back(std::move(plain));
      conns.push_back(std::move(set));
    }
  }
};

std::string Hex(const std::string& s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof(b), "%02x", c);
    out += b;
  }
  return out;
}

TEST(TcpBulkOptions, IteratorReadsWhatGetsockoptReads) {
  const Status available = bpf::TcpOptionsIterAvailable();
  if (!available.ok()) GTEST_SKIP() << "no TCP iterator here: " << available.ToString();
  Sockets s;
  UniqueFd netns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  Result<std::unordered_map<uint64_t, bpf::TcpOptionValues>> all = bpf::ReadTcpOptions(netns.get());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  const std::vector<bpf::BulkOption>& opts = bpf::TcpBulkOptions();
  for (size_t i = 0; i < s.fds.size(); ++i) {
    uint64_t cookie = 0;
    socklen_t cl = sizeof(cookie);
    ASSERT_EQ(::getsockopt(s.fds[i], SOL_SOCKET, SO_COOKIE, &cookie, &cl), 0);
    auto it = all->find(cookie);
    ASSERT_NE(it, all->end()) << "socket " << i << " not met by the iterator";
    size_t read = 0;
    std::string missing;
    for (size_t k = 0; k < opts.size(); ++k) {
      char buf[64] = {};
      socklen_t len = sizeof(buf);
      const bool has = ::getsockopt(s.fds[i], opts[k].level, opts[k].name, buf, &len) == 0;
      const std::optional<std::string>& bulk = it->second.values[k];
      const std::string what = "socket " + std::to_string(i) + " " + SocketOptionName(opts[k].level, opts[k].name);
      if (!bulk) {  // left to getsockopt(2)
        missing += " " + SocketOptionName(opts[k].level, opts[k].name);
        continue;
      }
      ++read;
      ASSERT_TRUE(has) << what << ": read by the iterator, not by getsockopt(2)";
      EXPECT_EQ(Hex(*bulk), Hex(std::string(buf, len))) << what;
    }
    // The iterator reads all of them but the IPv6 ones of an IPv4 socket
    // (sol_ipv6_sockopt takes AF_INET6 only) and, on 6.18, IP_TOS of an
    // accepted IPv6 socket (read with getsockopt(2) then).
    if (s.families[i] == AF_INET)
      EXPECT_EQ(read, opts.size() - 2) << "socket " << i << " missing:" << missing;
    else
      EXPECT_GE(read, opts.size() - 1) << "socket " << i << " missing:" << missing;
  }
}

TEST(TcpBulkOptions, DumpedOptionsAreTheSameEitherWay) {
  Sockets s;
  TcpBulkOptions bulk(0);
  for (size_t i = 0; i < s.fds.size(); ++i) {
    google::protobuf::RepeatedPtrField<image::SocketOption> per_socket, in_bulk;
    const KnownOptions known = bulk.For(s.fds[i]);
    Status st = DumpSocketOptions(s.fds[i], s.families[i], SOCK_STREAM, IPPROTO_TCP, "s", &per_socket, true);
    ASSERT_TRUE(st.ok()) << st.ToString();
    st = DumpSocketOptions(s.fds[i], s.families[i], SOCK_STREAM, IPPROTO_TCP, "s", &in_bulk, true, &known);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(per_socket.size(), in_bulk.size()) << "socket " << i;
    for (int k = 0; k < per_socket.size(); ++k) {
      EXPECT_EQ(per_socket[k].level(), in_bulk[k].level());
      EXPECT_EQ(per_socket[k].name(), in_bulk[k].name());
      EXPECT_EQ(Hex(per_socket[k].value()), Hex(in_bulk[k].value()))
          << "socket " << i << " " << SocketOptionName(per_socket[k].level(), per_socket[k].name());
    }
    EXPECT_EQ(IntSocketOption(s.fds[i], SOL_SOCKET, SO_REUSEPORT), IntSocketOption(s.fds[i], SOL_SOCKET, SO_REUSEPORT, &known));
  }
  if (bpf::TcpOptionsIterAvailable().ok()) {
    EXPECT_EQ(bulk.found(), s.fds.size());
    EXPECT_EQ(bulk.missed(), 0u);
  }
}

// Missing (CRYO_PRETEND_MISSING): nothing read in bulk, every option read
// with getsockopt(2); a socket made after the pass is read so too.
TEST(TcpBulkOptions, MissingOrMadeSinceReadsPerSocket) {
  Sockets s;
  {
    ::setenv(kPretendMissingEnv, bpf::kTcpIterFeature, 1);
    TcpBulkOptions bulk(0);
    EXPECT_TRUE(bulk.For(s.fds[0]).values.empty());
    ::unsetenv(kPretendMissingEnv);
  }
  if (!bpf::TcpOptionsIterAvailable().ok()) GTEST_SKIP() << "no TCP iterator here";
  {
    // Fewer sockets than the threshold: no pass, getsockopt(2) for all.
    TcpBulkOptions few(2);
    EXPECT_TRUE(few.For(s.fds[0]).values.empty());
    EXPECT_TRUE(few.For(s.fds[1]).values.empty());
    EXPECT_FALSE(few.For(s.fds[2]).values.empty());
  }
  {
    // A namespace of many more TCP sockets than the dump has described: the
    // pass waits until the dump has described a quarter of them, checked
    // each time the count doubles (at 2, 4, 8, 16, 32).
    TcpBulkOptions crowded(2, 4, [] { return uint64_t{100}; });
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(crowded.For(s.fds[0]).values.empty()) << "call " << i + 1;
    EXPECT_FALSE(crowded.For(s.fds[0]).values.empty());
    TcpBulkOptions alone(2, 4, [] { return uint64_t{8}; });
    EXPECT_TRUE(alone.For(s.fds[0]).values.empty());
    EXPECT_TRUE(alone.For(s.fds[1]).values.empty());
    EXPECT_FALSE(alone.For(s.fds[2]).values.empty());
  }
  EXPECT_GT(NamespaceTcpSockets(), 0u);  // these sockets at least
  TcpBulkOptions bulk(0);
  EXPECT_FALSE(bulk.For(s.fds[0]).values.empty());
  Connection later = Connect(AF_INET);
  EXPECT_TRUE(bulk.For(later.client.get()).values.empty());
  EXPECT_EQ(bulk.missed(), 1u);
}

}  // namespace
}  // namespace cryo
