// RestoreFdsNeeded: what a restore's fd pool holds at once in cryo, which
// the dump compares with cryo's hard RLIMIT_NOFILE (base/fd_limit.h).
#include "files/fd_table.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

// `n` fds numbered from 3 of kind `kind`.
image::FdTable Table(int n, image::FdKind kind) {
  image::FdTable t;
  for (int i = 0; i < n; ++i) {
    image::Fd* f = t.add_fds();
    f->set_fd(3 + i);
    f->set_kind(kind);
  }
  return t;
}

TEST(RestoreFdsNeeded, PoolAboveTheHighestFdOrEveryFdOpenAtOnce) {
  // One process, 4000 TCP sockets at fds 3..4002: the pool's fds from 4003
  // up (the highest 8002), the TCP duplicates below them.
  image::FdTable one = Table(4000, image::FD_TCP_SOCKET);
  EXPECT_EQ(RestoreFdsNeeded({&one}, 0), 4003u + 4000u + 64u);
  // Four processes of 1000 each: fds low, but 8000 open at once.
  std::vector<image::FdTable> four(4, Table(1000, image::FD_TCP_SOCKET));
  EXPECT_EQ(RestoreFdsNeeded({&four[0], &four[1], &four[2], &four[3]}, 0), 4000u + 4000u + 64u);
  // Fds in flight in UNIX socket queues are descriptions of the pool too.
  image::FdTable files = Table(10, image::FD_REGULAR);
  EXPECT_EQ(RestoreFdsNeeded({&files}, 5), 13u + 15u + 64u);
  // 8000 sockets in one process (4000 loopback connections, bench_tcp.py)
  // fit below a hard limit of 20,000.
  image::FdTable bench = Table(8000, image::FD_TCP_SOCKET);
  EXPECT_LE(RestoreFdsNeeded({&bench}, 0), 20000u);
}

}  // namespace
}  // namespace cryo
