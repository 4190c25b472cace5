#include "base/interrupt.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>

namespace cryo {
namespace {

// In a child: the process-wide handlers and fault points stay out of the test runner.
int InChild(void (*body)()) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(InterruptTest, ASignalIsNoticedAtTheNextCheck) {
  const int status = InChild([] {
    CatchInterrupts();
    if (!CheckInterrupt().ok() || InterruptSignal() != 0) _exit(1);
    raise(SIGTERM);  // caught: cryo goes on to its next check
    const Status s = CheckInterrupt();
    if (s.ok() || InterruptSignal() != SIGTERM || s.message() != "interrupted by SIGTERM") _exit(2);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(InterruptTest, TheNthFaultPointRaisesTheSignal) {
  const int status = InChild([] {
    setenv("CRYO_FAULT_POINT", "3", 1);
    setenv("CRYO_FAULT_SIGNAL", "HUP", 1);
    InitFaultPoints();
    FaultPoint();
    FaultPoint();
    if (FaultPointsPassed() != 2) _exit(1);
    FaultPoint();  // SIGHUP, not caught: dies
    _exit(3);
  });
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP) << status;
}

TEST(InterruptTest, CountingOnlyRaisesNothing) {
  const int status = InChild([] {
    setenv("CRYO_FAULT_POINT", "0", 1);
    InitFaultPoints();
    for (int i = 0; i < 100; ++i) FaultPoint();
    if (FaultPointsPassed() != 100) _exit(1);
    DisarmFaultPoints();
    FaultPoint();
    if (FaultPointsPassed() != 100) _exit(2);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace cryo
