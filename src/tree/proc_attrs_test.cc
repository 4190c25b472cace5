#include "tree/proc_attrs.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <gtest/gtest.h>

#include "base/file_util.h"

namespace cryo {
namespace {

bool HasCapSysResource() {
  __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2] = {};
  if (syscall(SYS_capget, &h, d) != 0) return false;
  return d[0].effective >> CAP_SYS_RESOURCE & 1;
}

TEST(CpuListTest, ParsesRangesAndSingles) {
  auto m = CpuListToMask("0-2,5,7-7\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const auto* set = reinterpret_cast<const cpu_set_t*>(m->data());
  EXPECT_EQ(m->size(), sizeof(cpu_set_t));
  for (int c = 0; c < 10; ++c) EXPECT_EQ(CPU_ISSET(c, set) != 0, c <= 2 || c == 5 || c == 7) << "cpu " << c;
}

TEST(CpuListTest, RejectsMalformed) {
  EXPECT_FALSE(CpuListToMask("3-1").ok());
  EXPECT_FALSE(CpuListToMask("a").ok());
  EXPECT_FALSE(CpuListToMask("0-99999").ok());
}

TEST(CpuListTest, OnlineHoldsThisCpu) {
  auto m = OnlineCpuMask();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(CPU_ISSET(sched_getcpu(), reinterpret_cast<const cpu_set_t*>(m->data())));
}

TEST(OomScoreAdjTest, RaisingIsAllowedLoweringNeedsCapSysResource) {
  auto mine = ReadFileToString("/proc/self/oom_score_adj");
  ASSERT_TRUE(mine.ok());
  const int now = std::stoi(*mine);
  auto up = CanSetOomScoreAdj(now < 1000 ? now + 1 : now);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_TRUE(*up);
  if (now == -1000) GTEST_SKIP() << "oom_score_adj is already the lowest";
  // -1000 is below our oom_score_adj_min (unless something with
  // CAP_SYS_RESOURCE set -1000 on an ancestor and it was raised since).
  auto down = CanSetOomScoreAdj(-1000);
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  if (HasCapSysResource()) {
    EXPECT_TRUE(*down);
  } else {
    EXPECT_FALSE(*down);
  }
  // The probe did not change us.
  EXPECT_EQ(std::stoi(*ReadFileToString("/proc/self/oom_score_adj")), now);
}

}  // namespace
}  // namespace cryo
