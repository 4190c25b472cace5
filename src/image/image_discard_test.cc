// A dump that does not finish: its marker, and what Discard() removes.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "image/image_dir.h"

namespace cryo::image {
namespace {

std::string NewTempDir() {
  char tmpl[] = "/tmp/cryo-discard-test-XXXXXX";
  return ::mkdtemp(tmpl);
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

void WriteSome(ImageWriter& w) {
  ProcessCore core;
  core.set_pid(42);
  ASSERT_TRUE(w.WriteRecord(CoreName(42), FileKind::kProcessCore, core).ok());
  w.AsyncWriteRecord(MmName(42), FileKind::kMm, Mm());
  auto pages = w.CreatePageFile(PagesName(42));
  ASSERT_TRUE(pages.ok());
  ASSERT_TRUE(w.FinishPageFile(std::move(*pages), 0).ok());
}

TEST(DiscardTest, RemovesOnlyWhatItCreatedAndTheDirectoryItMade) {
  const std::string root = NewTempDir();
  const std::string dir = root + "/img";
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->MarkIncomplete("testing").ok());
  WriteSome(**w);
  ASSERT_TRUE((*w)->Flush().ok());
  EXPECT_EQ(Names(dir), (std::vector<std::string>{"core-42.img", IncompleteMarkerName(), "mm-42.img", "pages-42.img"}));
  // While the marker is there, the image is refused by name.
  auto img = LoadImage(dir);
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find(kIncompleteImage), std::string::npos) << img.status().ToString();
  ASSERT_TRUE((*w)->Discard().ok());
  struct stat st;
  EXPECT_NE(::stat(dir.c_str(), &st), 0) << "the directory cryo made is gone";
  ::rmdir(root.c_str());
}

TEST(DiscardTest, KeepsAnExistingDirectoryAndTheUsersFiles) {
  const std::string dir = NewTempDir();
  std::ofstream(dir + "/notes.txt") << "mine\n";
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->MarkIncomplete("testing").ok());
  WriteSome(**w);
  ASSERT_TRUE((*w)->Discard().ok());
  EXPECT_EQ(Names(dir), std::vector<std::string>{"notes.txt"});
  (void)!std::system(("rm -rf " + dir).c_str());
}

TEST(DiscardTest, AFinishedDumpHasNoMarker) {
  const std::string dir = NewTempDir();
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->MarkIncomplete("testing").ok());
  WriteSome(**w);
  ASSERT_TRUE((*w)->SyncFiles().ok());
  ASSERT_TRUE((*w)->MarkComplete().ok());
  EXPECT_EQ(Names(dir), (std::vector<std::string>{"core-42.img", "mm-42.img", "pages-42.img"}));
  // Records without an inventory (a cryo killed before its marker, or an
  // older one): incomplete too.
  auto img = LoadImage(dir);
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find(kIncompleteImage), std::string::npos) << img.status().ToString();
  (void)!std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace cryo::image
