// Passing the signals a user sends to cryo on to the process it stands for.
#pragma once

#include <sys/types.h>

namespace cryo {

// From now on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 delivered
// to this process are sent on to `pid` (SA_RESTART: interrupted waits go on).
// One target per process: a later call replaces it.
void ForwardSignalsTo(pid_t pid);

}  // namespace cryo
