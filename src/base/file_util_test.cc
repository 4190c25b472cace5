#include "base/file_util.h"

#include <gtest/gtest.h>

namespace cryo {

TEST(FileUtilTest, SplitWordsSkipsRuns) {
  auto w = SplitWords("  a\tbb   c ");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[1], "bb");
}

TEST(FileUtilTest, SplitLinesKeepsEmptyMiddle) {
  auto l = SplitLines("a\n\nb\n");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[1], "");
}

TEST(FileUtilTest, ReadsProcFile) {
  auto r = ReadFileToString("/proc/self/status");
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->find("Pid:"), std::string::npos);
}

TEST(FileUtilTest, MissingFileNamesPath) {
  auto r = ReadFileToString("/nonexistent/x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("/nonexistent/x"), std::string::npos);
}

}  // namespace cryo
