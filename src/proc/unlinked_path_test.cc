#include "proc/unlinked_path.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace cryo::paths {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/cryo-unlinked-path-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

Opened OpenedFd(int fd) {
  Opened o;
  EXPECT_TRUE(ReadOpened("/proc/self/fd/" + std::to_string(fd), &o).ok());
  return o;
}

TEST(UnlinkedPath, ADeletedFileWithNoNameLeftIsUnlinkedAndRecreatable) {
  const std::string dir = TempDir();
  const std::string path = dir + "/gone";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  const Opened o = OpenedFd(fd);
  EXPECT_TRUE(IsUnlinked(o));
  EXPECT_FALSE(HasOtherName(o));
  EXPECT_EQ(WhyNotRecreatable(o), "");
  EXPECT_EQ(RecreateDir(path), dir);
  ::close(fd);
  ::rmdir(dir.c_str());
}

TEST(UnlinkedPath, AFileWithAnotherNameIsFoundThroughIt) {
  const std::string dir = TempDir();
  const std::string path = dir + "/first";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::link(path.c_str(), (dir + "/second").c_str()), 0);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  const Opened o = OpenedFd(fd);
  EXPECT_FALSE(IsUnlinked(o));
  EXPECT_TRUE(HasOtherName(o));
  auto other = FindOtherName(o);
  ASSERT_TRUE(other.ok()) << other.status().message();
  EXPECT_EQ(*other, dir + "/second");
  ::close(fd);
  ::unlink((dir + "/second").c_str());
  ::rmdir(dir.c_str());
}

TEST(UnlinkedPath, AnotherNameOutsideTheSearchBudgetIsReportedWithWhereItLooked) {
  const std::string dir = TempDir();
  const std::string path = dir + "/first";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0700), 0);
  ASSERT_EQ(::link(path.c_str(), (dir + "/sub/second").c_str()), 0);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  auto other = FindOtherName(OpenedFd(fd), 1);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("which cryo did not find"), std::string::npos) << other.status().message();
  EXPECT_NE(other.status().message().find(dir), std::string::npos) << other.status().message();
  ::close(fd);
  ::unlink((dir + "/sub/second").c_str());
  ::rmdir((dir + "/sub").c_str());
  ::rmdir(dir.c_str());
}

TEST(UnlinkedPath, ADeletedDirectoryWhoseParentIsGoneIsRecreatedInTheNearestAncestor) {
  const std::string dir = TempDir();
  ASSERT_EQ(::mkdir((dir + "/a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + "/a/b").c_str(), 0700), 0);
  const int fd = ::open((dir + "/a/b").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::rmdir((dir + "/a/b").c_str()), 0);
  ASSERT_EQ(::rmdir((dir + "/a").c_str()), 0);
  const Opened o = OpenedFd(fd);
  EXPECT_TRUE(IsUnlinked(o));
  EXPECT_EQ(WhyNotRecreatable(o), "");
  EXPECT_EQ(RecreateDir(dir + "/a/b"), dir);
  ::close(fd);
  ::rmdir(dir.c_str());
}

TEST(UnlinkedPath, PseudoFileSystemsAreNamed) {
  EXPECT_NE(PseudoFileKind(0x5345434d), nullptr);  // memfd_secret
  EXPECT_NE(PseudoFileKind(0xa10a10a1), nullptr);  // AIO ring
  EXPECT_EQ(PseudoFileKind(0xef53), nullptr);      // ext4
}

}  // namespace
}  // namespace cryo::paths
