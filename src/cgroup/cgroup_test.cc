#include <gtest/gtest.h>

#include "cgroup/cgroup_dump.h"
#include "cgroup/cgroup_paths.h"
#include "cgroup/cgroup_restore.h"

namespace cryo::cgroup {
namespace {

TEST(ProcCgroupTest, ParsesV1AndV2Lines) {
  auto r = ParseProcCgroup("9:name=systemd:/user.slice\n4:memory:/a/b:c\n1:cpu,cpuacct:/\n0::/x y\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].hierarchy, "name=systemd");
  EXPECT_EQ((*r)[1].path, "/a/b:c");
  EXPECT_EQ((*r)[2].hierarchy, "cpu,cpuacct");
  EXPECT_EQ((*r)[3].hierarchy, "");
  EXPECT_EQ((*r)[3].path, "/x y");
  EXPECT_FALSE(ParseProcCgroup("garbage\n").ok());
  EXPECT_FALSE(ParseProcCgroup("1:cpu:relative\n").ok());
}

TEST(CgroupPathTest, Relative) {
  EXPECT_EQ(RelativePath("/a/b", "/a/b"), "");
  EXPECT_EQ(RelativePath("/a/b/c/d", "/a/b"), "c/d");
  EXPECT_EQ(RelativePath("/a/x", "/a/b"), "../x");
  EXPECT_EQ(RelativePath("/", "/a/b"), "../..");
  EXPECT_EQ(RelativePath("/q", "/"), "q");
}

TEST(CgroupPathTest, Join) {
  EXPECT_EQ(*JoinPath("/a/b", ""), "/a/b");
  EXPECT_EQ(*JoinPath("/a/b", "c/d"), "/a/b/c/d");
  EXPECT_EQ(*JoinPath("/a/b", "../x"), "/a/x");
  EXPECT_EQ(*JoinPath("/a/b", "../.."), "/");
  EXPECT_FALSE(JoinPath("/a", "../..").ok());
  EXPECT_EQ(*JoinPath("/", "a/./b/"), "/a/b");
}

std::vector<proc::MountInfo> Mounts() {
  auto m = proc::ParseMountInfo(
      "30 25 0:26 / /sys/fs/cgroup/cpu rw shared:9 - cgroup cgroup rw,cpu\n"
      "31 25 0:27 / /sys/fs/cgroup/cpu\\040acct rw - cgroup cgroup rw,cpuacct\n"
      "32 25 0:28 /sub /mnt/systemd rw - cgroup cgroup rw,name=systemd\n"
      "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
      "34 25 0:30 / /srv rw - ext4 /dev/sda1 rw\n");
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

TEST(CgroupDirTest, FindsTheMountOfAHierarchy) {
  const auto m = Mounts();
  EXPECT_EQ(*CgroupDir(m, "cpu", "/a/b"), "/sys/fs/cgroup/cpu/a/b");
  EXPECT_EQ(*CgroupDir(m, "cpuacct", "/"), "/sys/fs/cgroup/cpu acct");
  EXPECT_EQ(*CgroupDir(m, "", "/x"), "/sys/fs/cgroup/unified/x");
  // A mount of a subtree holds only paths below its root.
  EXPECT_EQ(*CgroupDir(m, "name=systemd", "/sub/s"), "/mnt/systemd/s");
  EXPECT_FALSE(CgroupDir(m, "name=systemd", "/other").ok());
  EXPECT_FALSE(CgroupDir(m, "memory", "/").ok());
  EXPECT_FALSE(CgroupDir(m, "cpu,cpuacct", "/").ok());  // not one hierarchy here
}

TEST(CgroupRootsTest, Parses) {
  auto r = ParseCgroupRoots({"/all", "memory:/m", "cgroup2:/v2", "name=systemd:/s"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->all, "/all");
  EXPECT_EQ(r->by_hierarchy.at("memory"), "/m");
  EXPECT_EQ(r->by_hierarchy.at(""), "/v2");
  EXPECT_EQ(r->by_hierarchy.at("name=systemd"), "/s");
  EXPECT_FALSE(ParseCgroupRoots({"relative"}).ok());
  EXPECT_FALSE(ParseCgroupRoots({"memory:relative"}).ok());
  EXPECT_FALSE(ParseCgroupRoots({"/a/../b"}).ok());
}

}  // namespace
}  // namespace cryo::cgroup
