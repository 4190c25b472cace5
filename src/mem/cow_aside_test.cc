#include "mem/cow_aside.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "image/format.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = image::kPageSize;

std::string PageOf(char c) { return std::string(kPage, c); }

class CowAsideTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cow_aside_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ::rmdir(dir_.c_str()); }
  std::string dir_;
};

TEST_F(CowAsideTest, PastTheLimitPagesGoToAnUnnamedSpillFile) {
  CowAside aside(dir_, 2 * kPage);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(aside.Put(0x10000 + i * kPage, PageOf('a' + i).data()).ok());
  EXPECT_EQ(aside.peak_memory(), 2 * kPage);
  EXPECT_EQ(aside.spilled_pages(), 3u);
  // Nothing named is left in the directory (rmdir in TearDown would fail).
  std::string got(kPage, '\0');
  for (int i = 4; i >= 0; --i) {
    auto taken = aside.Take(0x10000 + i * kPage, got.data());
    ASSERT_TRUE(taken.ok());
    EXPECT_TRUE(*taken);
    EXPECT_EQ(got, PageOf('a' + i)) << i;
    EXPECT_FALSE(aside.Has(0x10000 + i * kPage));
  }
  auto again = aside.Take(0x10000, got.data());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_F(CowAsideTest, AKeptPageStaysAndDropFreesARange) {
  CowAside aside(dir_, kPage);
  ASSERT_TRUE(aside.Put(0x1000, PageOf('x').data()).ok());
  ASSERT_TRUE(aside.Put(0x1000, PageOf('y').data()).ok());  // the first copy is the freeze's
  ASSERT_TRUE(aside.Put(0x2000, PageOf('z').data()).ok());   // spilled
  aside.Drop(0x2000, 0x3000);
  EXPECT_FALSE(aside.Has(0x2000));
  // The spill slot is used again: the file does not grow.
  ASSERT_TRUE(aside.Put(0x3000, PageOf('w').data()).ok());
  EXPECT_EQ(aside.spilled_pages(), 2u);
  std::string got(kPage, '\0');
  ASSERT_TRUE(*aside.Take(0x1000, got.data()));
  EXPECT_EQ(got, PageOf('x'));
  ASSERT_TRUE(*aside.Take(0x3000, got.data()));
  EXPECT_EQ(got, PageOf('w'));
}

}  // namespace
}  // namespace cryo
