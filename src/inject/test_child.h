// Tests: a forked child killed (SIGKILL) and reaped when the test leaves its
// scope, whatever the test's outcome.
#pragma once

#include <signal.h>
#include <sys/wait.h>

namespace cryo {

struct KillOnExit {
  pid_t pid;
  bool reaped = false;
  ~KillOnExit() {
    if (!reaped && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
  }
};

}  // namespace cryo
