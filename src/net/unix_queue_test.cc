#include "net/unix_queue.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <sys/stat.h>

#include "base/unique_fd.h"

namespace cryo {
namespace {

struct Pair {
  UniqueFd a, b;
  explicit Pair(int type) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

int PeekOff(int fd) {
  int v = 0;
  socklen_t len = sizeof(v);
  ::getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &v, &len);
  return v;
}

TEST(UnixQueue, DatagramsKeepBoundariesAndStayQueued) {
  for (int type : {SOCK_DGRAM, SOCK_SEQPACKET}) {
    Pair p(type);
    const std::string big(300000, 'x');  // larger than one peek's buffer
    const std::vector<std::string> sent = {"", "a", "", big, "bb", ""};
    UnixQueue q;
    for (const std::string& m : sent) q.Add()->assign(m);
    ASSERT_TRUE(RefillUnixQueue({p.b.get()}, q, "", "test").ok());
    UnixQueue got;
    Status st = PeekUnixQueue(p.a.get(), type, false, p.b.get(), "test", &got, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(got.size(), static_cast<int>(sent.size()));
    for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[static_cast<int>(i)], sent[i]) << i;
    EXPECT_EQ(PeekOff(p.a.get()), -1);  // set back
    std::vector<char> buf(big.size() + 1);
    for (const std::string& m : sent)  // nothing was consumed
      EXPECT_EQ(::recv(p.a.get(), buf.data(), buf.size(), MSG_DONTWAIT), static_cast<ssize_t>(m.size()));
  }
}

TEST(UnixQueue, StreamBytes) {
  Pair p(SOCK_STREAM);
  ASSERT_EQ(::send(p.b.get(), "hello ", 6, 0), 6);
  ASSERT_EQ(::send(p.b.get(), "world", 5, 0), 5);
  ASSERT_EQ(::shutdown(p.b.get(), SHUT_WR), 0);
  UnixQueue got;
  ASSERT_TRUE(PeekUnixQueue(p.a.get(), SOCK_STREAM, true, p.b.get(), "test", &got, nullptr).ok());
  std::string all;
  for (const std::string& m : got) all += m;
  EXPECT_EQ(all, "hello world");
}

// The kernel returns a zero-length datagram to one MSG_PEEK only: one the
// program peeked already is invisible, and the dump must refuse, not drop it.
TEST(UnixQueue, PeekedZeroLengthDatagramRefused) {
  Pair p(SOCK_DGRAM);
  ASSERT_EQ(::send(p.b.get(), "", 0, 0), 0);
  ASSERT_EQ(::send(p.b.get(), "a", 1, 0), 1);
  int zero = 0;
  ASSERT_EQ(::setsockopt(p.a.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)), 0);
  char c;
  ASSERT_EQ(::recv(p.a.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT), 0);
  UnixQueue got;
  Status st = PeekUnixQueue(p.a.get(), SOCK_DGRAM, false, p.b.get(), "test", &got, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("cannot read"), std::string::npos) << st.ToString();
}

TEST(UnixQueue, FdsInFlightRefused) {
  Pair p(SOCK_STREAM);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  char data = 'x';
  iovec iov = {&data, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fds[0], sizeof(int));
  ASSERT_EQ(::sendmsg(p.b.get(), &m, 0), 1);
  ::close(fds[0]);
  ::close(fds[1]);
  UnixQueue got;
  Status st = PeekUnixQueue(p.a.get(), SOCK_STREAM, false, p.b.get(), "test", &got, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("SCM_RIGHTS"), std::string::npos) << st.ToString();
}

TEST(UnixQueue, SendersByName) {
  UniqueFd server(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)), named(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)),
      unnamed(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{}, b{};
  a.sun_family = b.sun_family = AF_UNIX;
  const std::string an = "cryo-test-server-" + std::to_string(::getpid()), bn = "cryo-test-client-" + std::to_string(::getpid());
  std::memcpy(a.sun_path + 1, an.data(), an.size());
  std::memcpy(b.sun_path + 1, bn.data(), bn.size());
  const socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + an.size());
  const socklen_t blen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + bn.size());
  ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&a), alen), 0);
  ASSERT_EQ(::bind(named.get(), reinterpret_cast<sockaddr*>(&b), blen), 0);
  UnixQueue q;
  q.Add()->assign("one");
  q.Add()->assign("two");
  const std::string to(reinterpret_cast<const char*>(&a), alen);
  ASSERT_TRUE(RefillUnixQueue({named.get(), unnamed.get()}, q, to, "test").ok());
  UnixQueue got, senders;
  ASSERT_TRUE(PeekUnixQueue(server.get(), SOCK_DGRAM, false, -1, "test", &got, &senders).ok());
  ASSERT_EQ(got.size(), 2);
  EXPECT_EQ(got[0], "one");
  EXPECT_EQ(got[1], "two");
  ASSERT_EQ(senders.size(), 2);
  EXPECT_EQ(senders[0], std::string(reinterpret_cast<const char*>(&b), blen));
  EXPECT_EQ(senders[1], "");
}

// Fds in flight: each message's own, peeked into the caller (the queue and
// the sender's fds untouched), and sent again with the same messages.
// A stream: more bytes before the first fds than one peek's buffer holds (a
// peek stopped by its buffer returns the fds of the next segment that has
// any), then fds, then bytes without.
TEST(UnixQueue, FdsInFlightKeepTheirMessages) {
  for (int type : {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET}) {
    Pair p(type);
    const std::string big(type == SOCK_STREAM ? 300000 : 1000, 'x');
    UnixQueue q;
    for (const char* m : {"", "abc", "def", "tail"}) q.Add()->assign(m);
    *q.Mutable(0) = big;
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
    const std::map<int, std::vector<int>> fds = {{1, {r.get()}}, {2, {w.get(), r.get()}}};
    ASSERT_TRUE(RefillUnixQueue({p.b.get()}, q, "", "test", &fds).ok());
    UnixQueue got;
    std::vector<QueuedFds> in_flight;
    Status st = PeekUnixQueue(p.a.get(), type, false, type == SOCK_STREAM ? -1 : p.b.get(), "test", &got, nullptr,
                              &in_flight);
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::string all;
    for (const std::string& m : got) all += m;
    EXPECT_EQ(all, big + "abcdeftail") << type;
    ASSERT_EQ(in_flight.size(), 2u) << type;
    // The fds close the message they end (a stream: the bytes since the
    // previous fds); the first message of a stream peek is the big one.
    const size_t first = type == SOCK_STREAM ? got.size() - 3 : 1;
    EXPECT_EQ(in_flight[0].message, static_cast<int>(first)) << type;
    EXPECT_EQ(got[in_flight[0].message].substr(got[in_flight[0].message].size() - 3), "abc") << type;
    EXPECT_EQ(got[in_flight[1].message], "def") << type;
    ASSERT_EQ(in_flight[0].fds.size(), 1u);
    ASSERT_EQ(in_flight[1].fds.size(), 2u);
    struct stat a{}, b{};
    ASSERT_EQ(::fstat(in_flight[1].fds[1].get(), &a), 0);
    ASSERT_EQ(::fstat(r.get(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);  // the same pipe
    if (type != SOCK_STREAM) {
      EXPECT_EQ(got.size(), 4);
    }
  }
}

}  // namespace
}  // namespace cryo
