#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

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
}

}  // namespace
}  // namespace cryo
