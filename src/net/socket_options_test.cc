#include "net/socket_options.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <set>

#include "base/unique_fd.h"

namespace cryo {
namespace {

using Options = google::protobuf::RepeatedPtrField<image::SocketOption>;

std::set<std::string> Names(const Options& opts) {
  std::set<std::string> out;
  for (const auto& o : opts) out.insert(SocketOptionName(o.level(), o.name()));
  return out;
}

int GetInt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof(v);
  EXPECT_EQ(::getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

void SetInt(int fd, int level, int name, int v) { ASSERT_EQ(::setsockopt(fd, level, name, &v, sizeof(v)), 0); }

TEST(SocketOptions, ANewSocketHasNone) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  Options opts;
  ASSERT_TRUE(DumpSocketOptions(fd.get(), AF_INET, SOCK_STREAM, 0, "s", &opts).ok());
  EXPECT_EQ(opts.size(), 0);
}

TEST(SocketOptions, TcpOptionsRoundTrip) {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM, 0));
  SetInt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
  SetInt(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  SetInt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, 33);
  SetInt(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, 4321);
  SetInt(fd.get(), SOL_SOCKET, SO_RCVBUF, 100000);
  SetInt(fd.get(), IPPROTO_IPV6, IPV6_TCLASS, 0x20);
  SetInt(fd.get(), IPPROTO_IP, IP_FREEBIND, 1);
  const struct linger lg = {1, 5};
  ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  const struct timeval tv = {3, 500000};
  ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  Options opts;
  Status st = DumpSocketOptions(fd.get(), AF_INET6, SOCK_STREAM, 0, "s", &opts);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Names(opts), (std::set<std::string>{"SO_KEEPALIVE", "TCP_NODELAY", "TCP_KEEPIDLE", "TCP_USER_TIMEOUT",
                                                "SO_RCVBUF", "IPV6_TCLASS", "IP_FREEBIND", "SO_LINGER", "SO_RCVTIMEO",
                                                "IPV6_FREEBIND" /* the same flag as IP_FREEBIND */}));
  UniqueFd again(::socket(AF_INET6, SOCK_STREAM, 0));
  ASSERT_TRUE(RestoreSocketOptions(again.get(), opts, "s").ok());
  for (int name : {SO_KEEPALIVE, SO_RCVBUF})
    EXPECT_EQ(GetInt(again.get(), SOL_SOCKET, name), GetInt(fd.get(), SOL_SOCKET, name));
  EXPECT_EQ(GetInt(again.get(), IPPROTO_TCP, TCP_KEEPIDLE), 33);
  EXPECT_EQ(GetInt(again.get(), IPPROTO_IPV6, IPV6_TCLASS), 0x20);
  struct timeval got{};
  socklen_t len = sizeof(got);
  ASSERT_EQ(::getsockopt(again.get(), SOL_SOCKET, SO_RCVTIMEO, &got, &len), 0);
  EXPECT_EQ(got.tv_sec, 3);
  EXPECT_EQ(got.tv_usec, 500000);
}

TEST(SocketOptions, UnixOptionsAndForcedBuffers) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  SetInt(fd.get(), SOL_SOCKET, SO_PASSCRED, 1);
  // Above wmem_max: only SO_SNDBUFFORCE sets it back (cryo runs as root).
  SetInt(fd.get(), SOL_SOCKET, 32 /*SO_SNDBUFFORCE*/, 8 << 20);
  Options opts;
  ASSERT_TRUE(DumpSocketOptions(fd.get(), AF_UNIX, SOCK_STREAM, 0, "u", &opts).ok());
  EXPECT_EQ(Names(opts), (std::set<std::string>{"SO_PASSCRED", "SO_SNDBUF"}));
  UniqueFd again(::socket(AF_UNIX, SOCK_STREAM, 0));
  ASSERT_TRUE(RestoreSocketOptions(again.get(), opts, "u").ok());
  EXPECT_EQ(GetInt(again.get(), SOL_SOCKET, SO_SNDBUF), GetInt(fd.get(), SOL_SOCKET, SO_SNDBUF));
  EXPECT_EQ(GetInt(again.get(), SOL_SOCKET, SO_PASSCRED), 1);
}

TEST(SocketOptions, AFilterIsRefused) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  struct sock_filter accept_all[] = {BPF_STMT(BPF_RET | BPF_K, 0xffffffff)};
  struct sock_fprog prog = {1, accept_all};
  ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), 0);
  Options opts;
  Status st = DumpSocketOptions(fd.get(), AF_UNIX, SOCK_STREAM, 0, "UNIX socket /x", &opts);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("UNIX socket /x has a socket filter"), std::string::npos) << st.message();
}

TEST(SocketOptions, DeferAcceptRoundTripsOrIsRefusedByName) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  SetInt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, 5);
  Options opts;
  Status st = DumpSocketOptions(fd.get(), AF_INET, SOCK_STREAM, 0, "s", &opts);
  ASSERT_TRUE(st.ok()) << st.ToString();
  UniqueFd again(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_TRUE(RestoreSocketOptions(again.get(), opts, "s").ok());
  EXPECT_EQ(GetInt(again.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT), GetInt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT));
}

}  // namespace
}  // namespace cryo

namespace cryo {
namespace {

// A loopback connection whose receive buffer TCP autotuned to a size that
// SO_RCVBUF(FORCE) cannot set (an odd one: setsockopt always stores twice the
// value given). Returns false if 50 connections never gave one.
bool AutotunedConnection(UniqueFd* receiver, UniqueFd* sender) {
  static char chunk[65536];
  for (int round = 0; round < 50; ++round) {
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return false;
    UniqueFd out(::socket(AF_INET, SOCK_STREAM, 0));
    if (::connect(out.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::fcntl(out.get(), F_SETFL, O_NONBLOCK) != 0)
      return false;
    UniqueFd in(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
    if (!in.valid()) return false;
    // 8 MiB through it, read as it comes: the receiver's buffer grows.
    for (size_t sent = 0, got = 0; got < (8u << 20);) {
      if (sent < (8u << 20)) {
        ssize_t n = ::send(out.get(), chunk, sizeof(chunk), 0);
        if (n > 0) sent += n;
      }
      ssize_t n = ::recv(in.get(), chunk, sizeof(chunk), 0);
      if (n > 0) got += n;
    }
    if (GetInt(in.get(), SOL_SOCKET, SO_RCVBUF) % 2 == 1) {
      *receiver = std::move(in);
      *sender = std::move(out);
      return true;
    }
  }
  return false;
}

TEST(SocketOptions, AnAutotunedTcpBufferIsLeftToAutotune) {
  UniqueFd in, out;
  ASSERT_TRUE(AutotunedConnection(&in, &out)) << "no connection got an odd (autotuned) SO_RCVBUF in 50 tries";
  Options opts;
  Status st = DumpSocketOptions(in.get(), AF_INET, SOCK_STREAM, IPPROTO_TCP, "t", &opts, /*connected=*/true);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Names(opts).count("SO_RCVBUF"), 0u);
}

}  // namespace
}  // namespace cryo
