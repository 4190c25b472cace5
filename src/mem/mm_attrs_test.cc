#include "mem/mm_attrs.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

TEST(MmAttributes, KsmMergeAny) {
  EXPECT_TRUE(KsmMergeAny("ksm_rmap_items 0\nksm_merge_any: yes\nksm_mergeable: yes\n"));
  EXPECT_FALSE(KsmMergeAny("ksm_rmap_items 0\nksm_merge_any: no\nksm_mergeable: yes\n"));
  EXPECT_FALSE(KsmMergeAny("ksm_rmap_items 0\n"));  // before Linux 6.6
  EXPECT_FALSE(KsmMergeAny("xksm_merge_any: yes\n"));
}

TEST(MmAttributes, FromResults) {
  image::MmAttributes a;
  const long none[] = {0, -1, -1, -22};  // EPERM: not registered; EINVAL: no such barrier
  MmAttributesFromResults(none, &a);
  EXPECT_FALSE(HasMmAttributes(a));
  const long some[] = {3, 0, -1, 0};
  MmAttributesFromResults(some, &a);
  EXPECT_EQ(a.thp_disable(), 3u);
  EXPECT_EQ(a.membarrier(), 16u | 256u);
  EXPECT_TRUE(HasMmAttributes(a));
}

}  // namespace
}  // namespace cryo
