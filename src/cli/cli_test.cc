#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/local_file.h"
#include "cli/counting_env.h"
#include "cli/messages.h"
#include "cli/preflight.h"

namespace cryo::cli {
namespace {

TEST(MessagesTest, SuccessLines) {
  EXPECT_EQ(DumpedLine(3, 1234, "/var/tmp/img", 268540723, 0.412, 0.3804, true),
            "dumped 3 processes (pid 1234) to /var/tmp/img: 256.1 MiB in 0.41 s, frozen 380 ms");
  EXPECT_EQ(DumpedLine(1, 7, "img", 12288, 0.004, 0.0031, false),
            "dumped 1 process (pid 7) to img: 12 KiB in 0.00 s, frozen 3 ms, not synced");
  EXPECT_EQ(RestoredLine(3, 1234, 0.1249), "restored 3 processes (pid 1234) in 0.12 s");
  EXPECT_EQ(RestoredLine(1, 1234, 2), "restored 1 process (pid 1234) in 2.00 s");
}

TEST(MessagesTest, PidValues) {
  EXPECT_EQ(PidValueProblem("1"), "");
  EXPECT_EQ(PidValueProblem(std::to_string(getpid())), "");
  EXPECT_EQ(PidValueProblem("0"), "pid 0 names no process (pids are positive numbers)");
  EXPECT_EQ(PidValueProblem("-5"), "pid -5 names no process (pids are positive numbers)");
  EXPECT_EQ(PidValueProblem("12ab"), "'12ab' is not a pid (a positive number)");
  EXPECT_EQ(PidValueProblem(""), "'' is not a pid (a positive number)");
  EXPECT_NE(PidValueProblem("99999999999").find("out of range"), std::string::npos);
}

TEST(MessagesTest, FirstWord) {
  const char* argv[] = {"cryo", "-o", "log", "-v", "undump", "-t", "1"};
  EXPECT_EQ(FirstWord(7, argv, {"-o", "--log-file"}), "undump");
  EXPECT_EQ(FirstWord(4, argv, {"-o", "--log-file"}), "");
  EXPECT_EQ(FirstWord(3, argv, {}), "log");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cli_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)!system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PreflightTest, AnImageIsReplacedOnlyWithForce) {
  TempDir d;
  EXPECT_TRUE(CheckImageDirFree(d.path(), false).ok());
  EXPECT_TRUE(CheckImageDirFree(d.path() + "/not-yet", false).ok());
  std::ofstream(d.path() + "/pages-1.img") << "x";  // an incomplete image: nothing to lose
  EXPECT_TRUE(CheckImageDirFree(d.path(), false).ok());
  std::ofstream(d.path() + "/inventory.img") << "x";
  Status s = CheckImageDirFree(d.path(), false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), d.path() + " already holds an image (inventory.img): give --force to replace it, "
                                    "or choose another directory");
  EXPECT_TRUE(CheckImageDirFree(d.path(), true).ok());
}

// A child that has exited and is not reaped holds its pid.
pid_t Zombie() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  siginfo_t info;
  EXPECT_EQ(waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  return pid;
}

TEST(PreflightTest, ZombieHoldsItsPid) {
  const pid_t pid = Zombie();
  auto held = HeldByExitingProcess(pid);
  ASSERT_TRUE(held.has_value());
  EXPECT_TRUE(held->zombie);
  EXPECT_EQ(held->parent, getpid());
  std::vector<std::string> said;
  const std::string left = WaitForExitingPids({getpid(), pid}, 0.05, [&](const std::string& s) { said.push_back(s); });
  EXPECT_EQ(said, std::vector<std::string>{"waiting for pid " + std::to_string(pid) + " (still exiting) ..."});
  EXPECT_NE(left.find("pid " + std::to_string(pid) + " is still a zombie: its parent, pid " + std::to_string(getpid())),
            std::string::npos)
      << left;
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_FALSE(HeldByExitingProcess(pid).has_value());
  said.clear();
  EXPECT_EQ(WaitForExitingPids({pid}, 0.05, [&](const std::string& s) { said.push_back(s); }), "");
  EXPECT_TRUE(said.empty());
  EXPECT_FALSE(HeldByExitingProcess(getpid()).has_value());  // running, not exiting
}

TEST(CountingEnvTest, CountsTheEndOfEachFile) {
  TempDir d;
  CountingEnv env(Env::Default());
  auto a = env.NewWritableFile(d.path() + "/a", 0600);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Append("12345", 5).ok());
  auto b = env.NewWritableFile(d.path() + "/b", 0600);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->WriteAt("xy", 2, 4096).ok());
  ASSERT_TRUE((*b)->WriteAt("hdr", 3, 0).ok());
  EXPECT_EQ(env.BytesWritten(), 5u + 4098u);
  auto a2 = env.NewWritableFile(d.path() + "/a", 0600);  // created again: its new content counts
  ASSERT_TRUE(a2.ok());
  ASSERT_TRUE((*a2)->Append("1", 1).ok());
  EXPECT_EQ(env.BytesWritten(), 1u + 4098u);
  ASSERT_EQ(unlink((d.path() + "/b").c_str()), 0);  // removed again: not part of the image
  EXPECT_EQ(env.BytesWritten(), 1u);
}

// Page data written past the wrapper (O_DIRECT, mem/direct_write.h): the
// local file underneath is reachable, and what is written there counts.
TEST(CountingEnvTest, ForwardsTheLocalFileAndCountsWritesPastIt) {
  TempDir d;
  CountingEnv env(Env::Default());
  auto f = env.NewWritableFile(d.path() + "/pages-1.img", 0600);
  ASSERT_TRUE(f.ok());
  LocalFile* local = AsLocalFile(f->get());
  ASSERT_NE(local, nullptr);
  const std::string data(4096, 'p');
  ASSERT_EQ(pwrite(local->local_fd(), data.data(), data.size(), 8192), 4096);
  local->WrittenElsewhere(8192, 4096);
  EXPECT_EQ(env.BytesWritten(), 12288u);
  NullWritableFile null("null");
  EXPECT_EQ(AsLocalFile(&null), nullptr);
}

}  // namespace
}  // namespace cryo::cli
