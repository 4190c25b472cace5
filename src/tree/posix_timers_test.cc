#include "tree/posix_timers.h"

#include <stdlib.h>

#include <gtest/gtest.h>

namespace cryo {
namespace {

std::vector<ProcTimer> WithIds(std::initializer_list<int> ids) {
  std::vector<ProcTimer> out;
  for (int id : ids) out.push_back(ProcTimer{.id = id});
  return out;
}

TEST(PosixTimers, WithoutChosenIdsOnlyZeroToNMinusOneRestore) {
  EXPECT_TRUE(CheckTimerIdsWithoutChoice(7, {}).ok());
  EXPECT_TRUE(CheckTimerIdsWithoutChoice(7, WithIds({0, 1, 2})).ok());
  Status st = CheckTimerIdsWithoutChoice(7, WithIds({0, 2}));
  EXPECT_EQ(st.ToString(),
            "pid 7 has POSIX timers with ids 0, 2: a restored process gets the ids 0, 1, ... in order, and this "
            "kernel lacks PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+) to choose them");
  EXPECT_FALSE(CheckTimerIdsWithoutChoice(7, WithIds({1})).ok());
}

TEST(PosixTimers, PretendMissingTurnsTheChoiceOff) {
  ASSERT_EQ(setenv("CRYO_PRETEND_MISSING", "timer-restore-ids", 1), 0);
  EXPECT_FALSE(TimerIdsCanBeChosen());
  ASSERT_EQ(unsetenv("CRYO_PRETEND_MISSING"), 0);
}

}  // namespace
}  // namespace cryo
