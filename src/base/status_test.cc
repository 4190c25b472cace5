#include "base/status.h"

#include <gtest/gtest.h>

namespace cryo {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, ErrnoNamesTheResource) {
  Status s = Status::Errno(ESRCH, "seize pid 42");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ESRCH);
  EXPECT_NE(s.ToString().find("seize pid 42"), std::string::npos);
  EXPECT_NE(s.ToString().find("errno 3"), std::string::npos);
}

TEST(StatusTest, PrefixAddsContext) {
  Status s = Status::Error("fd 3 is a socket");
  s.Prefix("dumping pid 7");
  EXPECT_EQ(s.ToString(), "dumping pid 7: fd 3 is a socket");
}

Result<int> Half(int x) {
  if (x % 2) return Status::Error("odd");
  return x / 2;
}

Status UseHalf(int x, int* out) {
  CRYO_ASSIGN_OR_RETURN(int h, Half(x));
  *out = h;
  return Status::Ok();
}

TEST(ResultTest, AssignOrReturn) {
  int out = 0;
  EXPECT_TRUE(UseHalf(8, &out).ok());
  EXPECT_EQ(out, 4);
  EXPECT_FALSE(UseHalf(3, &out).ok());
}

}  // namespace cryo
