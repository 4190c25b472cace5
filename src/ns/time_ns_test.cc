// The tree's time namespace (time_ns.h): which shapes are restored and by
// whom the namespace is made, the offsets file read and written, and a live
// child in a time namespace of its own dumped.
#include "ns/time_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/file_util.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace cryo::ns {
namespace {

constexpr uint64_t kHost = 10, kTree = 20, kOther = 30;

TEST(TimeNs, WholeTreeInsideIsMadeByCryo) {
  auto plan = PlanTimeNamespace({{100, 1, kTree, kTree}, {101, 100, kTree, kTree}}, 100, kHost);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->ns, kTree);
  EXPECT_EQ(plan->entry, 0);
}

TEST(TimeNs, UnshareForkRootMakesIt) {
  // `unshare --time --fork CMD` dumped from unshare's pid.
  auto plan = PlanTimeNamespace({{100, 1, kHost, kTree}, {101, 100, kTree, kTree}, {102, 101, kTree, kTree}}, 100,
                                kHost);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->entry, 100);
  // Deeper: a shell above it.
  plan = PlanTimeNamespace({{90, 1, kHost, kHost}, {100, 90, kHost, kTree}, {101, 100, kTree, kTree}}, 90, kHost);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->entry, 100);
}

TEST(TimeNs, HostOnlyIsNothing) {
  auto plan = PlanTimeNamespace({{100, 1, kHost, kHost}, {101, 100, kHost, kHost}}, 100, kHost);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->ns, 0u);
}

TEST(TimeNs, ShapesARestoreCannotRepeatAreRefused) {
  auto two = PlanTimeNamespace({{100, 1, kTree, kTree}, {101, 100, kTree, kOther}}, 100, kHost);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("only with one time namespace"), std::string::npos);
  auto setns = PlanTimeNamespace({{100, 1, kTree, kHost}}, 100, kHost);
  ASSERT_FALSE(setns.ok());
  EXPECT_NE(setns.status().message().find("pid 100 lives in time namespace time:[20] but creates its children"),
            std::string::npos)
      << setns.status().message();
  // A child created before its parent unshared.
  auto before = PlanTimeNamespace({{100, 1, kHost, kTree}, {101, 100, kHost, kHost}}, 100, kHost);
  ASSERT_FALSE(before.ok());
  EXPECT_NE(before.status().message().find("pid 101 lives in cryo's time namespace but its parent pid 100"),
            std::string::npos)
      << before.status().message();
  auto entries = PlanTimeNamespace({{90, 1, kHost, kHost}, {100, 90, kHost, kTree}, {101, 90, kHost, kTree}}, 90,
                                   kHost);
  ASSERT_FALSE(entries.ok());
  EXPECT_NE(entries.status().message().find("pid 100 and pid 101 each create"), std::string::npos);
}

TEST(TimeNs, OffsetsRoundTrip) {
  image::TimeNamespace t;
  ASSERT_TRUE(ParseTimensOffsets("monotonic       100000         0\nboottime        -5 250000000\n", &t).ok());
  EXPECT_EQ(t.monotonic_ns(), 100000000000000ll);
  EXPECT_EQ(t.boottime_ns(), -4750000000ll);
  EXPECT_EQ(FormatTimensOffsets(t), "monotonic 100000 0\nboottime -5 250000000\n");
  image::TimeNamespace bad;
  EXPECT_FALSE(ParseTimensOffsets("monotonic 1 0\n", &bad).ok());
  EXPECT_FALSE(ParseTimensOffsets("monotonic 1 0\nboottime 1 1000000000\n", &bad).ok());
  EXPECT_FALSE(ParseTimensOffsets("realtime 1 0\nmonotonic 1 0\nboottime 1 0\n", &bad).ok());
}

// A child that unshared a time namespace with offsets and forked a grandchild
// in it: dumped from the child (it makes the namespace) and from the
// grandchild (it lives in it).
TEST(TimeNs, LiveChildDumped) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWTIME) != 0) ::_exit(2);
    const char text[] = "monotonic 12345 6789\nboottime 23456 0\n";
    const int fd = ::open("/proc/self/timens_offsets", O_WRONLY);
    if (fd < 0 || ::write(fd, text, sizeof(text) - 1) != static_cast<ssize_t>(sizeof(text) - 1)) ::_exit(3);
    const pid_t g = ::fork();
    if (g == 0) {
      for (;;) ::pause();
    }
    if (::write(ready[1], &g, sizeof(g)) != sizeof(g)) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  pid_t grandchild = 0;
  ASSERT_EQ(::read(ready[0], &grandchild, sizeof(grandchild)), static_cast<ssize_t>(sizeof(grandchild)));
  ::close(ready[0]);
  image::NamespaceTable table;
  std::set<std::string> features;
  Status s = DumpTimeNamespace({child, grandchild}, {{child, ::getpid()}, {grandchild, child}}, child, &table, &features);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(features.count("time-ns"));
  EXPECT_EQ(table.time().monotonic_ns(), 12345000006789ll);
  EXPECT_EQ(table.time().boottime_ns(), 23456000000000ll);
  EXPECT_EQ(table.time().entry_pid(), child);
  image::NamespaceTable inner;
  s = DumpTimeNamespace({grandchild}, {{grandchild, child}}, grandchild, &inner, &features);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(inner.time().entry_pid(), 0);
  EXPECT_EQ(inner.time().monotonic_ns(), 12345000006789ll);
  ::kill(grandchild, SIGKILL);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace cryo::ns
