#include "mem/aio_ring.h"

#include <gtest/gtest.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace cryo {
namespace {

TEST(AioRingTest, HeaderOfARealContext) {
  aio_context_t ctx = 0;
  if (::syscall(SYS_io_setup, 8, &ctx) != 0) GTEST_SKIP() << "io_setup: " << strerror(errno);
  // The context id is the address of its ring (fs/aio.c ioctx_alloc).
  const std::string what = DescribeAioRingHeader(reinterpret_cast<const void*>(ctx), 32);
  EXPECT_NE(what.find("a ring of "), std::string::npos) << what;
  EXPECT_NE(what.find("no completion waiting"), std::string::npos) << what;
  ::syscall(SYS_io_destroy, ctx);
}

TEST(AioRingTest, UnreapedCompletionsAndGarbage) {
  uint32_t h[5] = {0, 16, 14, 3, 0xa10a10a1};  // id, nr, head, tail (wrapped), magic
  EXPECT_EQ(DescribeAioRingHeader(h, sizeof(h)), "a ring of 16 events, 5 completions not yet reaped (io_getevents)");
  EXPECT_EQ(DescribeAioRingHeader(h, 8), "");
  h[4] = 0;  // not a ring
  EXPECT_EQ(DescribeAioRingHeader(h, sizeof(h)), "");
  h[4] = 0xa10a10a1;
  h[3] = 16;  // tail out of the ring
  EXPECT_EQ(DescribeAioRingHeader(h, sizeof(h)), "");
}

}  // namespace
}  // namespace cryo
