// The janitor: what a restore creates that outlives its processes (a SysV
// shared memory segment, a file under /dev/shm) must go if the restore does
// not complete, also when cryo is killed with SIGKILL, which it cannot catch.
// So before creating such an object cryo tells a process of its own, forked
// for the restore, how to remove it; if the pipe to that process closes before
// cryo said "done" (cryo failed, or died), the janitor removes everything it
// was told about and exits. It is a sentinel (base/sentinel.h): it runs in a
// session of its own (a Ctrl-C at the terminal does not reach it), holds no
// fd but its channel and stderr, and only
// removes what is still the object cryo made: a SysV segment whose creator is
// cryo's pid, a file by a name only that cryo uses, a cgroup directory cryo
// made (rmdir(2) removes only an empty cgroup: none another program uses).
#pragma once

#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/sentinel.h"
#include "base/status.h"

namespace cryo {

class Janitor {
 public:
  // Starts the janitor (not a child of cryo). Its pid is none of `avoid` (the
  // pids a restore needs).
  static Result<std::unique_ptr<Janitor>> Start(const std::set<pid_t>& avoid);
  // Not done: the janitor removes what it was told about; waits (bounded) for
  // it to finish, so that nothing is left when cryo returns.
  ~Janitor();
  Janitor(const Janitor&) = delete;
  Janitor& operator=(const Janitor&) = delete;

  // Before creating SysV segment `id` (shmget with the id set by shm_next_id).
  Status WillCreateSysv(int id);
  // Before creating the file `path` (O_CREAT | O_EXCL).
  Status WillCreateFile(const std::string& path);
  // The nftables table `name` (family inet) goes if the restore fails.
  Status WillRemoveNetLock(const std::string& name);
  // Before creating the cgroup directory `path` (mkdir, parents told first):
  // removed last, deepest first, once the processes have left it.
  Status WillCreateCgroup(const std::string& path);
  // The restore is complete, its tree `root` about to be released: what was
  // created stays if the release happens. Then Released(), once every task
  // is detached: the janitor exits (awaited only when this object goes). If
  // the pipe closes between the two (cryo killed while it released the
  // tree), the janitor waits (bounded) for `root` to be killed with cryo
  // (PTRACE_O_EXITKILL) or to run untraced, and removes the objects only in
  // the first case.
  void Done(pid_t root);
  void Released();
  // Every task the restore makes (pids, thread ids, ghosts), told before the
  // first is made. If cryo dies before Released(), its tracees are killed
  // by the kernel as its exit gets to them (PTRACE_O_EXITKILL), after its
  // channel closed: the janitor waits (bounded) for cryo's exit and then for
  // each of these to be gone or a zombie, so that once the janitor is gone
  // no process of the failed restore runs.
  Status WillMakeTasks(const std::vector<pid_t>& tasks);
  pid_t pid() const { return sentinel_->pid(); }

 private:
  explicit Janitor(std::unique_ptr<Sentinel> s) : sentinel_(std::move(s)) {}
  std::unique_ptr<Sentinel> sentinel_;
};

// The janitor of the restore in progress, for the code that creates objects
// (nullptr: no janitor, nothing to tell).
Janitor* CurrentJanitor();
void SetCurrentJanitor(Janitor* j);

// A name for a temporary file of this process that no other process uses and
// that a later cryo can recognise as left behind: PREFIX-PID-STARTTIME-TAG.
std::string OwnTempName(const std::string& prefix, const std::string& tag);
// Whether `name` (PREFIX-PID-STARTTIME-...) was made by a process that is gone.
bool IsStaleTempName(const std::string& prefix, const std::string& name);

}  // namespace cryo
