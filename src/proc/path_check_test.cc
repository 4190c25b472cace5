#include "proc/path_check.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

namespace cryo::paths {
namespace {

constexpr long kProcFs = 0x9fa0;
constexpr long kCgroup2Fs = 0x63677270;
constexpr long kCgroupFs = 0x27e0eb;

std::string TempDir() {
  char tmpl[] = "/tmp/cryo-path-check-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

Opened OpenedFd(int fd) {
  Opened o;
  EXPECT_TRUE(ReadOpened("/proc/self/fd/" + std::to_string(fd), &o).ok());
  return o;
}

TEST(PathCheck, AnOrdinaryFileIsReopenable) {
  const std::string dir = TempDir();
  const std::string path = dir + "/a";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(WhyNotReopenable(OpenedFd(fd), {}), "");
  // A rename keeps it reachable: the link follows it.
  ASSERT_EQ(::rename(path.c_str(), (dir + "/b").c_str()), 0);
  Opened o = OpenedFd(fd);
  EXPECT_EQ(o.link, dir + "/b");
  EXPECT_EQ(WhyNotReopenable(o, {}), "");
  ::close(fd);
  ::unlink((dir + "/b").c_str());
  ::rmdir(dir.c_str());
}

TEST(PathCheck, ADeletedFileIsNot) {
  const std::string dir = TempDir();
  const std::string path = dir + "/gone";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  Opened o = OpenedFd(fd);
  EXPECT_EQ(WhyNotReopenable(o, {}), "was deleted");
  EXPECT_EQ(ShownPath(o), path);
  ::close(fd);
  ::rmdir(dir.c_str());
}

TEST(PathCheck, AFileReplacedOrAnotherObjectIsNot) {
  const std::string dir = TempDir();
  const std::string path = dir + "/f";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  Opened o = OpenedFd(fd);
  o.st.st_ino += 1;  // as if another file now had the path
  EXPECT_NE(WhyNotReopenable(o, {}).find("no longer reachable"), std::string::npos);
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(PathCheck, ProcPathsOfTheTreeAreNot) {
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Opened o = OpenedFd(fd);
  EXPECT_EQ(o.link, "/proc/" + std::to_string(::getpid()) + "/status");
  EXPECT_EQ(WhyNotReopenable(o, {}), "");  // another process's: reopened by path
  const std::string why = WhyNotReopenable(o, {::getpid()});
  EXPECT_NE(why.find("/proc directory of task " + std::to_string(::getpid())), std::string::npos) << why;
  ::close(fd);
  // A thread's directory, through /proc/thread-self.
  const int tfd = ::open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(tfd, 0);
  EXPECT_NE(WhyNotReopenable(OpenedFd(tfd), {::gettid()}), "");
  ::close(tfd);
  const int mfd = ::open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(mfd, 0);
  EXPECT_EQ(WhyNotReopenable(OpenedFd(mfd), {::getpid(), 1}), "");
  ::close(mfd);
}

TEST(PathCheck, StatefulSpecialFilesAreNot) {
  Opened o;
  o.link = "/proc/kmsg";
  o.fs_type = kProcFs;
  EXPECT_NE(WhyNotReopenable(o, {}).find("kernel log"), std::string::npos);
  o.link = "/proc/pressure/memory";
  o.access = O_RDONLY;
  EXPECT_EQ(WhyNotReopenable(o, {}).find("PSI"), std::string::npos);
  o.access = O_RDWR;
  EXPECT_NE(WhyNotReopenable(o, {}).find("PSI trigger"), std::string::npos);
  o.link = "/sys/fs/cgroup/x/memory.pressure";
  o.fs_type = kCgroup2Fs;
  EXPECT_NE(WhyNotReopenable(o, {}).find("PSI trigger"), std::string::npos);
  o.link = "/sys/fs/cgroup/memory/x/cgroup.event_control";
  o.fs_type = kCgroupFs;
  o.access = O_WRONLY;
  EXPECT_NE(WhyNotReopenable(o, {}).find("eventfd notifications"), std::string::npos);
  o.link = "/sys/kernel/debug/x";
  o.fs_type = 0x64626720;
  EXPECT_NE(WhyNotReopenable(o, {}).find("debugfs"), std::string::npos);
  EXPECT_STREQ(UnreopenableFileSystem(0x74726163), "tracefs");
  EXPECT_EQ(UnreopenableFileSystem(0xEF53), nullptr);  // ext4
}

// A process whose working directory (or root, `chroot`) is a directory that
// was then removed; returns its pid, stopped in pause().
pid_t HoldDeletedDirectory(const std::string& dir, bool as_root) {
  int sync[2];
  if (::pipe(sync) != 0) return -1;
  const pid_t child = ::fork();
  if (child == 0) {
    if (::chdir(dir.c_str()) != 0 || (as_root && ::chroot(".") != 0)) ::_exit(1);
    char c = 'x';
    if (::write(sync[1], &c, 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ::close(sync[1]);
  char c;
  const bool ok = child > 0 && ::read(sync[0], &c, 1) == 1 && ::rmdir(dir.c_str()) == 0;
  ::close(sync[0]);
  return ok ? child : -1;
}

TEST(PathCheck, ADeletedWorkingDirectoryIsRecreatedNotRefused) {
  const std::string dir = TempDir();
  const pid_t child = HoldDeletedDirectory(dir, false);
  ASSERT_GT(child, 0);
  Status st = CheckProcessPaths({child}, {child});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(CheckProcessPaths({::getpid()}, {::getpid()}).ok());
}

TEST(PathCheck, ADeletedRootDirectoryIsRefusedByName) {
  if (::geteuid() != 0) GTEST_SKIP() << "chroot needs root";
  const std::string dir = TempDir();
  const pid_t child = HoldDeletedDirectory(dir, true);
  ASSERT_GT(child, 0);
  Status st = CheckProcessPaths({child}, {child});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pid " + std::to_string(child) + "'s root directory " + dir + " was deleted"),
            std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace cryo::paths
