#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "files/fs_root.h"
#include "files/snapshot_dump.h"
#include "image/image_dir.h"

namespace cryo {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/cryo-snapshot-test-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A directory before its entries, in path order; a link stays a link.
TEST(Snapshot, PlanWalksInPathOrderAndKeepsLinks) {
  const std::string d = TempDir();
  ASSERT_EQ(::mkdir((d + "/b").c_str(), 0755), 0);
  Write(d + "/b/x", "x");
  Write(d + "/a", "a");
  ASSERT_EQ(::symlink("a", (d + "/c").c_str()), 0);
  auto plan = PlanSnapshot({d + "/"});
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  std::vector<std::string> paths;
  for (const SnapshotItem& i : plan->items) paths.push_back(i.path);
  EXPECT_EQ(paths, (std::vector<std::string>{d, d + "/a", d + "/b", d + "/b/x", d + "/c"}));
  EXPECT_TRUE(plan->items[0].root);
  EXPECT_FALSE(plan->items[1].root);
  EXPECT_EQ(plan->items[4].link_target, "a");
  ASSERT_EQ(std::system(("rm -rf " + d).c_str()), 0);
}

// What cannot be carried is refused by name.
TEST(Snapshot, PlanRefusesFifosDevicesAndProc) {
  const std::string d = TempDir();
  ASSERT_EQ(::mkfifo((d + "/fifo").c_str(), 0600), 0);
  auto plan = PlanSnapshot({d});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find(d + "/fifo is a FIFO"), std::string::npos) << plan.status().message();
  plan = PlanSnapshot({"/dev/null"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("/dev/null is a character device"), std::string::npos);
  plan = PlanSnapshot({"/proc/self/status"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("proc file system"), std::string::npos);
  plan = PlanSnapshot({d + "/missing"});
  ASSERT_FALSE(plan.ok());
  ASSERT_EQ(std::system(("rm -rf " + d).c_str()), 0);
}

// The table's paths, order, kinds and extents are checked at load.
TEST(Snapshot, ValidateRefusesMalformedTables) {
  image::LoadedImage img;
  img.dir = "/img";
  auto add = [&](const std::string& path, image::SnapshotKind kind) {
    image::SnapshotEntry* e = img.snapshot.add_entries();
    e->set_path(path);
    e->set_kind(kind);
    return e;
  };
  add("/a", image::SNAPSHOT_DIRECTORY);
  image::SnapshotEntry* f = add("/a/f", image::SNAPSHOT_REGULAR);
  f->set_size(10);
  image::FileExtent* x = f->add_extents();
  x->set_offset(0);
  x->set_length(10);
  x->set_data_offset(4096);
  img.snapshot.set_data_size(10);
  EXPECT_TRUE(image::ValidateSnapshot(img).ok());
  x->set_length(11);  // past the end of the file
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  x->set_length(10);
  f->set_depth(1);  // no ancestor
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  f->set_depth(0);
  f->set_path("/a/../etc/passwd");
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  f->set_path("/0");  // before "/a": out of order
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  f->set_path("/a/f");
  // A hard link names a file with content before it.
  image::SnapshotEntry* l = add("/a/g", image::SNAPSHOT_REGULAR);
  l->set_link_of("/a/f");
  EXPECT_TRUE(image::ValidateSnapshot(img).ok());
  l->set_link_of("/a/h");  // no such file
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  l->set_link_of("/a");  // a directory
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  l->set_link_of("/a/f");
  l->set_size(3);  // content of its own
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  l->set_size(0);
  f->set_link_of("/a/g");  // after it, itself a link
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
}

// Hard links: every name in the snapshot is carried, the first with the
// content and the others naming it; a name outside is refused by name.
TEST(Snapshot, PlanCarriesHardLinksAndRefusesNamesOutside) {
  const std::string d = TempDir();
  ASSERT_EQ(::mkdir((d + "/in").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((d + "/in/sub").c_str(), 0755), 0);
  Write(d + "/in/b", "one inode");
  ASSERT_EQ(::link((d + "/in/b").c_str(), (d + "/in/sub/a").c_str()), 0);
  ASSERT_EQ(::link((d + "/in/b").c_str(), (d + "/in/a").c_str()), 0);
  auto plan = PlanSnapshot({d + "/in"});
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  std::map<std::string, std::string> link_of;
  for (const SnapshotItem& i : plan->items) link_of[i.path] = i.link_of;
  EXPECT_EQ(link_of[d + "/in/a"], "");
  EXPECT_EQ(link_of[d + "/in/b"], d + "/in/a");
  EXPECT_EQ(link_of[d + "/in/sub/a"], d + "/in/a");
  ASSERT_EQ(::link((d + "/in/b").c_str(), (d + "/out").c_str()), 0);
  plan = PlanSnapshot({d + "/in"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("4 hard links, of which the snapshot holds 3"), std::string::npos)
      << plan.status().message();
  plan = PlanSnapshot({d + "/in", d + "/out"});  // every name carried
  EXPECT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(std::system(("rm -rf " + d).c_str()), 0);
}

// --fs-root of a plain directory: walked as one more root; a character
// device 0:0 is a whiteout only in an overlay's upper dir.
TEST(FsRoot, PlainDirectoryIsWalkedAndRecorded) {
  const std::string d = TempDir();
  ASSERT_EQ(::mkdir((d + "/etc").c_str(), 0755), 0);
  Write(d + "/etc/x", "x");
  auto plan = PlanSnapshot({}, {}, d);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_TRUE(plan->has_fs_root);
  EXPECT_EQ(plan->fs_root.kind(), image::FS_ROOT_DIRECTORY);
  EXPECT_EQ(plan->fs_root.path(), d);
  ASSERT_EQ(plan->items.size(), 3u);
  EXPECT_EQ(plan->items[2].path, d + "/etc/x");
  if (::mknod((d + "/wh").c_str(), S_IFCHR | 0600, makedev(0, 0)) == 0) {
    plan = PlanSnapshot({}, {}, d);
    ASSERT_FALSE(plan.ok());
    EXPECT_NE(plan.status().message().find("--fs-root " + d + ": " + d + "/wh is a character device"),
              std::string::npos)
        << plan.status().message();
  }
  EXPECT_FALSE(PlanSnapshot({}, {}, "/").ok());
  ASSERT_EQ(std::system(("rm -rf " + d).c_str()), 0);
}

// A lower dir's identity: its entries' stat data, not their inode numbers.
TEST(FsRoot, LowerDigestFollowsStatNotInodes) {
  const std::string d = TempDir();
  Write(d + "/f", "content");
  auto a = DescribeLower(d);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->entries(), 2u);
  // The same file made again (another inode, same times): the same.
  struct stat st, dst;
  ASSERT_EQ(::stat((d + "/f").c_str(), &st), 0);
  ASSERT_EQ(::stat(d.c_str(), &dst), 0);
  ASSERT_EQ(::unlink((d + "/f").c_str()), 0);
  Write(d + "/f", "content");
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, (d + "/f").c_str(), times, 0), 0);
  const struct timespec dtimes[2] = {dst.st_atim, dst.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, d.c_str(), dtimes, 0), 0);
  struct stat again;
  ASSERT_EQ(::stat((d + "/f").c_str(), &again), 0);
  auto c = DescribeLower(d);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(a->tree_xxh3(), c->tree_xxh3()) << "inode " << st.st_ino << " -> " << again.st_ino;
  Write(d + "/f", "contenT");  // same size, new mtime
  const struct timespec later[2] = {{st.st_atim.tv_sec, 0}, {st.st_mtim.tv_sec + 5, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (d + "/f").c_str(), later, 0), 0);
  auto e = DescribeLower(d);
  ASSERT_TRUE(e.ok());
  EXPECT_NE(e->tree_xxh3(), c->tree_xxh3());
  Write(d + "/g", "");
  auto g = DescribeLower(d);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->entries(), 3u);
  ASSERT_EQ(std::system(("rm -rf " + d).c_str()), 0);
}

// A whiteout only under an overlay fs root's upper dir; the layers clean.
TEST(FsRoot, ValidateWhiteoutsAndLayers) {
  image::LoadedImage img;
  img.dir = "/img";
  image::SnapshotEntry* u = img.snapshot.add_entries();
  u->set_path("/up");
  u->set_kind(image::SNAPSHOT_DIRECTORY);
  image::SnapshotEntry* w = img.snapshot.add_entries();
  w->set_path("/up/gone");
  w->set_kind(image::SNAPSHOT_WHITEOUT);
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());  // no overlay
  image::FsRoot* r = img.snapshot.mutable_fs_root();
  r->set_path("/merged");
  r->set_kind(image::FS_ROOT_OVERLAY);
  r->set_upper_dir("/up");
  r->set_work_dir("/work");
  r->add_lowers()->set_path("/low");
  EXPECT_TRUE(image::ValidateSnapshot(img).ok());
  r->set_mount_options("upperdir=/etc");
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  r->set_mount_options("");
  r->mutable_lowers(0)->set_path("/low:/etc");
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  r->mutable_lowers(0)->set_path("/low");
  r->set_work_dir("/merged/w");
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());
  r->set_work_dir("/work");
  r->set_upper_dir("/other");
  EXPECT_FALSE(image::ValidateSnapshot(img).ok());  // the whiteout is not in it
}

}  // namespace
}  // namespace cryo
