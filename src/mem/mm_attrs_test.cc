#include "mem/mm_attrs.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

TEST(MmAttributes, FromResults) {
  image::MmAttributes a;
  const long none[] = {0, 0};
  MmAttributesFromResults(none, &a);
  EXPECT_FALSE(HasMmAttributes(a));
  const long old_kernel[] = {-22, -22};  // EINVAL
  MmAttributesFromResults(old_kernel, &a);
  EXPECT_FALSE(HasMmAttributes(a));
  const long some[] = {3, 0x154};
  MmAttributesFromResults(some, &a);
  EXPECT_EQ(a.thp_disable(), 3u);
  EXPECT_EQ(a.membarrier(), 0x154u);
  EXPECT_TRUE(HasMmAttributes(a));
}

}  // namespace
}  // namespace cryo
