#include "tree/restore_plan.h"

#include <gtest/gtest.h>

#include <deque>

namespace cryo {
namespace {

class PlanTest : public ::testing::Test {
 protected:
  void Add(pid_t pid, pid_t ppid, pid_t pgid, pid_t sid, bool zombie = false) {
    image::ProcessCore& c = store_.emplace_back();
    c.set_pid(pid);
    c.set_ppid(ppid);
    c.set_pgid(pgid);
    c.set_sid(sid);
    c.set_zombie(zombie);
    cores_[pid] = &c;
  }
  RestorePlan Plan(pid_t root) { return PlanRestore(root, cores_); }
  std::deque<image::ProcessCore> store_;
  std::map<pid_t, const image::ProcessCore*> cores_;
};

TEST_F(PlanTest, PlainTreeClonesByParent) {
  Add(10, 1, 10, 10);
  Add(11, 10, 11, 10);
  Add(12, 11, 11, 10);
  Add(13, 10, 11, 10);
  RestorePlan p = Plan(10);
  EXPECT_TRUE(p.ghosts.empty());
  EXPECT_EQ(p.processes(), 4u);
  EXPECT_EQ(p.at(10).creator, 0);
  EXPECT_EQ(p.at(10).clones, (std::vector<pid_t>{11, 13}));
  EXPECT_EQ(p.at(11).clones, (std::vector<pid_t>{12}));
  EXPECT_TRUE(p.notes.empty());
}

TEST_F(PlanTest, GroupWhoseLeaderIsGoneGetsAGhostClonedByAMember) {
  Add(10, 1, 10, 10);
  Add(20, 10, 15, 10, /*zombie=*/true);
  Add(21, 10, 15, 10);
  RestorePlan p = Plan(10);
  ASSERT_EQ(p.ghosts, (std::vector<pid_t>{15}));
  EXPECT_EQ(p.at(15).kind, PlannedTask::kGroupGhost);
  EXPECT_EQ(p.at(15).creator, 21);  // a member that does not become a zombie
  EXPECT_EQ(p.at(21).clones, (std::vector<pid_t>{15}));
  EXPECT_EQ(p.at(10).clones, (std::vector<pid_t>{20, 21}));
  EXPECT_EQ(p.processes(), 3u);
}

TEST_F(PlanTest, SessionWhoseLeaderIsGoneGetsAGhostThatClonesItsMembers) {
  Add(10, 1, 10, 10);
  Add(30, 10, 25, 25);  // reparented to the subreaper 10 when 25 exited
  Add(31, 30, 25, 25);
  Add(32, 10, 32, 25);  // its own group in the same session
  RestorePlan p = Plan(10);
  ASSERT_EQ(p.ghosts, (std::vector<pid_t>{25}));
  EXPECT_EQ(p.at(25).kind, PlannedTask::kSessionGhost);
  EXPECT_EQ(p.at(25).creator, 10);
  EXPECT_EQ(p.at(10).clones, (std::vector<pid_t>{25}));
  EXPECT_EQ(p.at(25).clones, (std::vector<pid_t>{30, 32}));
  EXPECT_EQ(p.at(30).clones, (std::vector<pid_t>{31}));
}

TEST_F(PlanTest, GroupInsideAGhostSessionIsLedByTheSessionGhost) {
  Add(10, 1, 10, 10);
  Add(30, 10, 25, 25);
  RestorePlan p = Plan(10);
  EXPECT_EQ(p.ghosts, (std::vector<pid_t>{25}));  // one ghost leads both
}

TEST_F(PlanTest, GroupLedFromAGhostSessionGetsItsOwnGhost) {
  Add(10, 1, 10, 10);
  Add(30, 10, 40, 25);
  RestorePlan p = Plan(10);
  EXPECT_EQ(p.ghosts, (std::vector<pid_t>{25, 40}));
  EXPECT_EQ(p.at(40).creator, 30);
  EXPECT_EQ(p.at(25).clones, (std::vector<pid_t>{30}));
  EXPECT_EQ(p.at(30).clones, (std::vector<pid_t>{40}));
}

TEST_F(PlanTest, RootSessionOutsideTheImageIsNotRebuilt) {
  // A shell job: the shell (5) leads the session, the job's group is led by
  // another process of the pipeline (7), outside the image too.
  Add(10, 5, 7, 5);
  Add(11, 10, 7, 5);
  RestorePlan p = Plan(10);
  EXPECT_TRUE(p.ghosts.empty());
  EXPECT_EQ(p.notes.size(), 1u);
  EXPECT_EQ(p.at(10).clones, (std::vector<pid_t>{11}));
}

TEST_F(PlanTest, SessionMembersUnderSeveralParentsAreNotRebuilt) {
  Add(10, 1, 10, 10);
  Add(11, 10, 11, 10);
  Add(30, 10, 25, 25);
  Add(31, 11, 25, 25);
  RestorePlan p = Plan(10);
  EXPECT_TRUE(p.ghosts.empty());
  EXPECT_FALSE(p.notes.empty());
  EXPECT_EQ(p.at(10).clones, (std::vector<pid_t>{11, 30}));
}

}  // namespace
}  // namespace cryo
