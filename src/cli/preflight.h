// Checks the command line makes before a dump or a restore starts: an image
// is not replaced silently, and a pid the image needs that a dying process
// still holds is waited for, saying so.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace cryo::cli {

// Refuses a dump into `dir` if it holds a complete image (its inventory),
// unless `force`: a dump must not replace an image nobody asked it to.
Status CheckImageDirFree(const std::string& dir, bool force);

// A pid held by a process on its way out: a zombie its parent has not reaped
// yet, or a task still exiting (PF_EXITING: after a SIGKILL the kernel still
// tears down its memory and files).
struct ExitingHolder {
  pid_t pid = 0;
  bool zombie = false;
  pid_t parent = 0;
  std::string parent_comm;
};
std::optional<ExitingHolder> HeldByExitingProcess(pid_t pid);

// Waits until no pid of `pids` is held by an exiting process, for at most
// `timeout` seconds, calling `say` once per pid waited for ("waiting for pid N
// (still exiting) ..."). Returns what still holds a pid when the time is up,
// as a sentence, or "".
std::string WaitForExitingPids(const std::vector<pid_t>& pids, double timeout,
                               const std::function<void(const std::string&)>& say);

}  // namespace cryo::cli
