#include "mem/premap_window.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

TEST(PremapWindowTest, SlotsAreDisjointGuardedAndInsideTheWindow) {
  std::vector<std::pair<uint64_t, uint64_t>> used = {{0x555555554000, 0x555555600000},
                                                     {0x7f1000000000, 0x7f2000000000}};
  std::map<pid_t, SlotSize> sizes = {{10, {1 << 20, 5 * 4096}}, {11, {4096, 4096}}, {12, {64 << 20, 8 * 4096}}};
  auto w = PlanPremapWindow(used, sizes);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [pid, s] : w->slots) {
    EXPECT_EQ(s.premap_len, sizes[pid].premap_len);
    EXPECT_EQ(s.area_len, sizes[pid].area_len);
    EXPECT_GE(s.premap, w->start + 4096);
    EXPECT_LE(s.premap + s.premap_len, w->areas_start);
    EXPECT_GE(s.area, w->areas_start);
    EXPECT_LE(s.area + s.area_len + 4096, w->end());
    ranges.push_back({s.premap, s.premap + s.premap_len});
    ranges.push_back({s.area, s.area + s.area_len});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) EXPECT_GE(ranges[i].first, ranges[i - 1].second + 4096);  // a guard
  for (const auto& u : used) EXPECT_TRUE(w->end() <= u.first || u.second <= w->start);
}

TEST(PremapWindowTest, NoRoomIsAnError) {
  std::vector<std::pair<uint64_t, uint64_t>> used = {{1ull << 32, 0x7f0000000000}};
  auto w = PlanPremapWindow(used, {{10, {4096, 4096}}});
  EXPECT_FALSE(w.ok());
}

}  // namespace
}  // namespace cryo
