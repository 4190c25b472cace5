#include "base/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace cryo {
namespace {

// Puts the test process's RLIMIT_NOFILE back however a test ends.
struct SavedLimit {
  struct rlimit rl;
  SavedLimit() { ::getrlimit(RLIMIT_NOFILE, &rl); }
  ~SavedLimit() { ::setrlimit(RLIMIT_NOFILE, &rl); }
};

TEST(FdLimit, RaisesTheSoftLimitToTheHardOne) {
  SavedLimit saved;
  struct rlimit low = {64, saved.rl.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  EXPECT_EQ(RaiseFdLimit(), saved.rl.rlim_max);
  struct rlimit now;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, saved.rl.rlim_max);
}

// In a child (a death test): a hard limit lowered cannot be raised again
// without CAP_SYS_RESOURCE, and the other tests of this binary run on.
void CheckUnderHardLimit200() {
  struct rlimit low = {100, 200};  // lowering the hard limit needs no privilege
  if (::setrlimit(RLIMIT_NOFILE, &low) != 0) _exit(2);
  auto fail = [](const std::string& m) {
    fprintf(stderr, "%s\n", m.c_str());
    _exit(1);
  };
  if (!CheckFdLimit(200, "restoring 10 fds").ok()) fail("200 fds refused under a hard limit of 200");
  Status s = CheckFdLimit(201, "restoring 10 fds");
  if (s.ok()) fail("201 fds accepted under a hard limit of 200");
  for (const char* part : {"restoring 10 fds needs about 201", "RLIMIT_NOFILE hard limit of 200", "ulimit -Hn"})
    if (s.message().find(part) == std::string::npos) fail("no '" + std::string(part) + "' in: " + s.message());
  errno = EMFILE;
  Status e = FdLimitError("dup of pid 1 fd 3");
  if (e.err() != EMFILE || e.message().find("hard limit is 200") == std::string::npos) fail("EMFILE: " + e.message());
  errno = EBADF;
  if (FdLimitError("dup of pid 1 fd 3").message() != "dup of pid 1 fd 3") fail("EBADF named a limit");
  _exit(0);
}

TEST(FdLimit, ANeedAboveTheHardLimitNamesIt) {
  EXPECT_EXIT(CheckUnderHardLimit200(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace cryo
