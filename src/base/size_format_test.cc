#include "base/size_format.h"

#include <gtest/gtest.h>

namespace cryo {

TEST(FormatSizeTest, KiBBelowOneMiB) {
  EXPECT_EQ(FormatSize(0), "0 KiB");
  EXPECT_EQ(FormatSize(4096), "4 KiB");
  EXPECT_EQ(FormatSize(512), "0.5 KiB");
  EXPECT_EQ(FormatSize(1000 * 1024), "1000 KiB");
  EXPECT_EQ(FormatSize((1 << 20) - 1), "1.0 MiB");  // not "1024.0 KiB"
}

TEST(FormatSizeTest, MiBAndGiB) {
  EXPECT_EQ(FormatSize(1 << 20), "1.0 MiB");
  EXPECT_EQ(FormatSize(256ull * (1 << 20) + 110 * 1024), "256.1 MiB");
  EXPECT_EQ(FormatSize(3ull << 29), "1.5 GiB");
  EXPECT_EQ(FormatSize((1ull << 30) - 1), "1.0 GiB");
}

}  // namespace cryo
