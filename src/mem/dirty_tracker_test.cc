#include "mem/dirty_tracker.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

TEST(DirtyPagesTest, UnchangedOnlyInsideATrackedRangeWithNoWrittenPage) {
  DirtyPages d;
  d.tracked = {{0x1000, 0x9000}, {0x10000, 0x20000}};
  d.written = {{0x3000, 0x4000}, {0x12000, 0x14000}};
  EXPECT_TRUE(d.Unchanged(0x1000, 0x3000));
  EXPECT_FALSE(d.Unchanged(0x1000, 0x3001));  // reaches the written page
  EXPECT_FALSE(d.Unchanged(0x3000, 0x4000));
  EXPECT_TRUE(d.Unchanged(0x4000, 0x9000));
  EXPECT_FALSE(d.Unchanged(0x8000, 0xa000));    // leaves the tracked range
  EXPECT_FALSE(d.Unchanged(0x9000, 0xa000));    // untracked
  EXPECT_FALSE(d.Unchanged(0x0, 0x2000));       // starts before it
  EXPECT_FALSE(d.Unchanged(0x8000, 0x11000));   // spans two tracked ranges and a hole
  EXPECT_TRUE(d.Unchanged(0x14000, 0x20000));
  EXPECT_FALSE(d.Unchanged(0x11000, 0x13000));
  EXPECT_FALSE(DirtyPages{}.Unchanged(0x1000, 0x2000));  // nothing tracked
}

}  // namespace
}  // namespace cryo
