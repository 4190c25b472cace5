#include "ns/mount_table.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace cryo::ns {
namespace {

// cryo's namespace: its root shared with the host (peer group 1), /proc, a
// /dev/shm tmpfs, /data of another disk.
constexpr char kRef[] =
    "22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
    "25 27 0:23 / /dev/shm rw,relatime shared:6 - tmpfs tmpfs rw,size=1024k\n"
    "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "30 27 254:16 / /data rw,relatime shared:7 - ext4 /dev/vdb rw\n";

std::vector<MountLine> Lines(const std::string& text) {
  auto r = ParseMountLines(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<MountLine>{};
}

// The tree's namespace after `unshare --mount` (private copies).
std::string Copied(const std::string& extra) {
  return "122 127 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
         "125 127 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1024k\n"
         "127 100 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
         "130 127 254:16 / /data rw,relatime - ext4 /dev/vdb rw\n" +
         extra;
}

Result<image::MountNamespace> Diff(const std::string& tree, bool* changed) {
  return DiffMountTables(Lines(tree), Lines(kRef), "pid 7: mount namespace: ", changed);
}

TEST(MountTable, ParsesTagsAndEscapes) {
  auto l = Lines("40 27 0:50 /a\\040b /mnt/x\\040y ro,nosuid master:3 shared:9 - tmpfs none rw,mode=700\n");
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].root, "/a b");
  EXPECT_EQ(l[0].point, "/mnt/x y");
  EXPECT_EQ(l[0].master, 3);
  EXPECT_EQ(l[0].shared, 9);
  EXPECT_EQ(l[0].dev, "0:50");
  EXPECT_FALSE(ParseMountLines("40 27 0:50 / /x rw\n").ok());
}

TEST(MountTable, Flags) {
  EXPECT_EQ(*MountFlags("ro,nosuid,nodev,noexec,relatime"),
            unsigned(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME));
  EXPECT_EQ(*MountFlags("rw"), unsigned(MS_STRICTATIME));
  EXPECT_FALSE(MountFlags("rw,idmapped").ok());
}

TEST(MountTable, PrivateCopiesOfSharedMountsAreRecorded) {
  bool changed = false;
  auto d = Diff(Copied(""), &changed);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(changed);
  ASSERT_EQ(d->mounts_size(), 4);  // each was a slave-to-be, is private
  for (const auto& e : d->mounts()) {
    EXPECT_EQ(e.action(), image::MOUNT_INHERITED);
    EXPECT_EQ(e.propagation(), image::PROPAGATION_PRIVATE);
    EXPECT_FALSE(e.remount());
  }
}

TEST(MountTable, SlaveCopiesAreWhatTheRestoreMakes) {
  std::string tree = Copied("");
  // unshare --propagation slave: every copy a slave of cryo's group.
  tree = "122 127 0:21 / /proc rw,nosuid,nodev,noexec,relatime master:5 - proc proc rw\n"
         "125 127 0:23 / /dev/shm rw,relatime master:6 - tmpfs tmpfs rw,size=1024k\n"
         "127 100 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw\n"
         "130 127 254:16 / /data ro,relatime master:7 - ext4 /dev/vdb rw\n";
  bool changed = false;
  auto d = Diff(tree, &changed);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->mounts_size(), 1);  // only the read-only remount
  EXPECT_EQ(d->mounts(0).mount_point(), "/data");
  EXPECT_TRUE(d->mounts(0).remount());
  EXPECT_EQ(d->mounts(0).flags() & MS_RDONLY, unsigned(MS_RDONLY));
  EXPECT_EQ(d->mounts(0).propagation(), image::PROPAGATION_SLAVE);
}

TEST(MountTable, AddedMounts) {
  bool changed = false;
  auto d = Diff(Copied("200 127 0:90 / /mnt/t rw,relatime shared:300 - tmpfs none rw,size=2048k,mode=700\n"
                       "201 127 254:16 /sub /mnt/ro ro,relatime - ext4 /dev/vdb rw\n"
                       "202 200 0:90 /dir /mnt/t/again rw,relatime - tmpfs none rw,size=2048k,mode=700\n"
                       "203 127 0:91 / /mnt/p rw,relatime - proc proc rw,hidepid=2\n"
                       "204 127 0:92 / /mnt/q rw,relatime - mqueue mqueue rw\n"
                       "205 127 0:93 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,mode=620,ptmxmode=666\n"),
                &changed);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->mounts_size(), 10);
  const auto& t = d->mounts(4);
  EXPECT_EQ(t.action(), image::MOUNT_TMPFS);
  EXPECT_EQ(t.data(), "size=2048k,mode=700");
  EXPECT_EQ(t.propagation(), image::PROPAGATION_SHARED);
  EXPECT_EQ(d->mounts(5).action(), image::MOUNT_BIND);
  EXPECT_EQ(d->mounts(5).source(), "/data/sub");
  EXPECT_EQ(d->mounts(5).flags() & MS_RDONLY, unsigned(MS_RDONLY));
  EXPECT_EQ(d->mounts(6).action(), image::MOUNT_BIND);
  EXPECT_EQ(d->mounts(6).source(), "/mnt/t/dir");
  EXPECT_EQ(d->mounts(7).action(), image::MOUNT_PROC);
  EXPECT_EQ(d->mounts(7).data(), "hidepid=2");
  EXPECT_EQ(d->mounts(8).action(), image::MOUNT_MQUEUE);
  // A devpts instance of the namespace's own (a container's /dev/pts).
  EXPECT_EQ(d->mounts(9).action(), image::MOUNT_DEVPTS);
  EXPECT_EQ(d->mounts(9).data(), "mode=620,ptmxmode=666");
  EXPECT_EQ(d->mounts(9).flags() & (MS_NOSUID | MS_NOEXEC), unsigned(MS_NOSUID | MS_NOEXEC));
}

TEST(MountTable, Refusals) {
  struct Case {
    std::string extra;
    std::string names;
  } cases[] = {
      {"200 127 7:0 / /mnt/x rw,relatime - ext4 /dev/loop0 rw\n", "/mnt/x (ext4 /dev/loop0) cannot be made again"},
      {"200 127 0:90 / /mnt/x rw,relatime shared:1 - tmpfs none rw\n", "shares peer group 1"},
      {"200 127 0:90 / /mnt/x rw,relatime unbindable - tmpfs none rw\n", "unbindable"},
      {"200 127 254:16 /gone//deleted /mnt/x rw,relatime - ext4 /dev/vdb rw\n", "deleted"},
      {"200 127 0:90 / /mnt/x rw,relatime shared:400 - tmpfs none rw\n"
       "201 127 0:91 / /mnt/y rw,relatime shared:400 - tmpfs none rw\n",
       "peer group 400 with other mounts"},
      {"200 127 0:90 / /mnt/x rw,relatime master:400 - tmpfs none rw\n", "slave of peer group 400 inside"},
  };
  for (const Case& c : cases) {
    bool changed = false;
    auto d = Diff(Copied(c.extra), &changed);
    ASSERT_FALSE(d.ok()) << c.extra;
    EXPECT_NE(d.status().message().find("pid 7: mount namespace: "), std::string::npos) << d.status().ToString();
    EXPECT_NE(d.status().message().find(c.names), std::string::npos) << d.status().ToString();
  }
}

TEST(MountTable, MountsTheTreeLacksAreRecordedToUnmount) {
  // A mount of cryo's gone from the tree's (umount /data, or mounted on the
  // host after the tree's namespace was made): listed as absent.
  bool changed = false;
  std::string tree = Copied("");
  const size_t line = tree.find("130 127");
  ASSERT_NE(line, std::string::npos);
  tree.erase(line, tree.find('\n', line) + 1 - line);
  auto d = Diff(tree, &changed);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(changed);
  ASSERT_EQ(d->absent_size(), 1);
  EXPECT_EQ(d->absent(0).mount_point(), "/data");
  EXPECT_EQ(d->absent(0).fstype(), "ext4");
  EXPECT_EQ(d->absent(0).source(), "/dev/vdb");
  // Refused when a mount the tree kept is on or below it: unmounting it
  // would take that one along.
  std::string below = Copied("");
  below += "131 130 0:80 / /data/sub rw - tmpfs none rw\n";
  std::string tree2 = below;
  const size_t at = tree2.find("130 127");
  tree2.erase(at, tree2.find('\n', at) + 1 - at);
  auto r = DiffMountTables(Lines(tree2), Lines(below), "pid 7: mount namespace: ", &changed);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/data (ext4 /dev/vdb), a mount of cryo's namespace, is not in the tree's, but "
                                      "/data/sub"),
            std::string::npos)
      << r.status().ToString();
}

TEST(MountTable, BindOfASharedMountJoinsItsGroup) {
  bool changed = false;
  auto d = Diff(Copied("200 127 0:90 / /mnt/t rw,relatime shared:300 - tmpfs none rw\n"
                       "201 200 0:90 /d /mnt/t/again rw,relatime shared:300 - tmpfs none rw\n"),
                &changed);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->mounts_size(), 6);
  EXPECT_FALSE(d->mounts(4).joins_source_group());
  EXPECT_EQ(d->mounts(5).action(), image::MOUNT_BIND);
  EXPECT_EQ(d->mounts(5).source(), "/mnt/t/d");
  EXPECT_TRUE(d->mounts(5).joins_source_group());
}

TEST(MountTable, PathUnder) {
  EXPECT_TRUE(PathUnder("/a/b", "/a"));
  EXPECT_TRUE(PathUnder("/a", "/a"));
  EXPECT_FALSE(PathUnder("/ab", "/a"));
  EXPECT_TRUE(PathUnder("/x", "/"));
}

}  // namespace
}  // namespace cryo::ns
