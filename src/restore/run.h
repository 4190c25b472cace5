// cryo run [--ns pid,mnt,net,ipc,uts] -- CMD ARGS: starts a program in fresh
// namespaces suited to checkpointing, detached.
//
// The program gets a PID namespace of its own, so that every later restore
// (with --pidns new) gives it and its children the same pids again. Its pid 1
// is a small init of cryo's, outside the tree that is checkpointed: the same
// init a restore with --pidns new puts in place (restore/pidns.h: it reaps
// orphans, forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
// the program and exits with its status), so dumping the program (pid 2
// inside) and restoring it leaves the namespace as it was. The init runs in a
// mount namespace of its own (a slave of cryo's) with the namespace's /proc,
// shared by the program; IPC, UTS and network namespaces (--ns) are the
// program's alone (the init stays in cryo's), as a dump of the program needs.
// The program leads its own session; its stdio is cryo's.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

struct RunOptions {
  std::vector<std::string> argv;
  std::string namespaces = "pid,mnt";  // the --ns list
};

struct RunStarted {
  pid_t pid = 0;   // the program's host pid
  pid_t init = 0;  // its namespace's init (host pid)
};

// Returns once the program was exec'd (or failed to be, with exec's error).
Result<RunStarted> RunInFreshNamespaces(const RunOptions& opts);

}  // namespace cryo
