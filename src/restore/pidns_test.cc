#include "restore/pidns.h"

#include <gtest/gtest.h>

#include "image/test_image.h"

namespace cryo {
namespace {

// A loaded image of the test image's processes (pid 42 and a child 43 in its
// session and group), and its restore plan.
struct Loaded {
  image::LoadedImage img;
  RestorePlan plan;
  Loaded() {
    image::testing::TestImage t = image::testing::MakeTestImage();
    image::testing::AddChild(&t, 43, 42);
    img.inventory = t.inv;
    img.processes = t.procs;
  }
  Status Check(bool shell_job = false) {
    std::map<pid_t, const image::ProcessCore*> cores;
    for (const auto& [pid, p] : img.processes) cores[pid] = &p.core;
    plan = PlanRestore(42, cores);
    return CheckPidnsFit(img, plan, shell_job);
  }
};

TEST(PidnsTest, TreeLeadingItsSessionFits) {
  Loaded l;
  EXPECT_TRUE(l.Check().ok()) << l.Check().ToString();
}

TEST(PidnsTest, SessionLedFromOutsideIsRefusedByName) {
  Loaded l;
  for (auto& [pid, p] : l.img.processes) p.core.set_sid(7);
  const Status s = l.Check();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("session 7 is led from outside the image"), std::string::npos) << s.ToString();
}

TEST(PidnsTest, SessionAndGroupOfExitedLeadersFit) {
  // Their ids are given to temporary leaders of the plan, inside the namespace.
  Loaded l;
  l.img.processes.at(43).core.set_sid(8);
  l.img.processes.at(43).core.set_pgid(9);
  EXPECT_TRUE(l.Check().ok()) << l.Check().ToString();
  EXPECT_EQ(l.plan.ghosts.size(), 2u);
}

TEST(PidnsTest, PidOneIsRefused) {
  Loaded l;
  l.img.processes.at(43).core.set_pgid(1);
  const Status s = l.Check();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("holds pid 1"), std::string::npos) << s.ToString();
}

TEST(PidnsTest, ProcFileOfAnotherProcessIsRefusedByName) {
  Loaded l;
  image::Fd* f = l.img.processes.at(43).fds.add_fds();
  f->set_fd(5);
  f->set_kind(image::FD_REGULAR);
  f->mutable_file()->set_path("/proc/sys/kernel/pid_max");  // not a process's: fine
  EXPECT_TRUE(l.Check().ok());
  f->mutable_file()->set_path("/proc/777/status");
  const Status s = l.Check();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("pid 43 fd 5 (/proc/777/status)"), std::string::npos) << s.ToString();
}

TEST(PidnsTest, ShellJobAndUnlinkedFilesAreRefused) {
  Loaded l;
  EXPECT_NE(l.Check(true).ToString().find("--shell-job"), std::string::npos);
  l.img.files.add_files()->set_path("/tmp/gone");
  EXPECT_NE(l.Check().ToString().find("unlinked file /tmp/gone"), std::string::npos);
}

}  // namespace
}  // namespace cryo
