// What processes share without being threads of one another, and what a
// thread may have stopped sharing with its leader: kcmp(2) compares the
// kernel objects. cryo restores every process with its own signal handlers
// and address space, and every thread sharing its leader's; anything else is
// refused. (Fd tables and fs_structs: see kProcessShared.)
#include "audit/sharing.h"

#include <linux/kcmp.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>

namespace cryo::audit {

namespace {

struct Shared {
  int type;
  const char* what;   // "its fd table"
  const char* flag;   // "CLONE_FILES"
};
// Objects every process has one of: equal means shared. (KCMP_IO and
// KCMP_SYSVSEM compare pointers that are null for most processes, so
// "equal" says nothing for them.)
// An fd table or fs_struct shared with the parent (CLONE_FILES, CLONE_FS) is
// restored shared; the sharing a restore cannot rebuild is refused by
// FindSharedTables (files/shared_tables.cc) right after the seize.
constexpr Shared kProcessShared[] = {
    {KCMP_VM, "its address space", "CLONE_VM"},
    {KCMP_SIGHAND, "its signal handlers", "CLONE_SIGHAND"},
};
// What a thread shares with its leader unless it unshared it.
constexpr Shared kThreadShared[] = {
    {KCMP_FILES, "its fd table", "CLONE_FILES"},
    {KCMP_FS, "its cwd, root and umask", "CLONE_FS"},
};

// kcmp result: 0 equal, 1 less, 2 greater; -1 with errno.
long Kcmp(pid_t a, pid_t b, int type) { return ::syscall(SYS_kcmp, a, b, type, 0, 0); }

// A process with no SysV semaphore undo list, to compare with (KCMP_SYSVSEM
// compares the lists' addresses): a child forked without CLONE_SYSVSEM has
// none (ipc/sem.c copy_semundo), whereas cryo's main thread has one as soon
// as it created a thread (pthread_create passes CLONE_SYSVSEM). It waits on
// a pipe until this object goes.
class NoUndoList {
 public:
  Status Start() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
    pid_ = ::fork();
    if (pid_ < 0) return Status::FromErrno("fork");
    if (pid_ == 0) {
      ::close(p[1]);
      char c;
      while (::read(p[0], &c, 1) < 0 && errno == EINTR) {
      }
      ::_exit(0);
    }
    ::close(p[0]);
    wr_ = p[1];
    return Status::Ok();
  }
  ~NoUndoList() {
    if (pid_ <= 0) return;
    ::close(wr_);
    ::waitpid(pid_, nullptr, 0);  // it exits at the pipe's EOF
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int wr_ = -1;
};

}  // namespace

Status ClassifySharing(const std::vector<SharingInput>& procs, pid_t root_parent, bool semaphores, Report* report) {
  Status error;
  for (const Shared& s : kProcessShared) {
    // Sorted by the kernel's (obfuscated, but consistent) order of the
    // objects, processes that share one are neighbours.
    std::vector<pid_t> pids;
    for (const SharingInput& p : procs) pids.push_back(p.pid);
    std::sort(pids.begin(), pids.end(), [&](pid_t a, pid_t b) {
      const long r = Kcmp(a, b, s.type);
      if (r < 0 && error.ok()) error = Status::FromErrno("kcmp of pids " + std::to_string(a) + " and " + std::to_string(b));
      return r == 1;
    });
    for (size_t i = 0; i + 1 < pids.size(); ++i) {
      const std::string subject = "pid " + std::to_string(pids[i]);
      if (Kcmp(pids[i], pids[i + 1], s.type) != 0) {
        report->Tally(subject, "kcmp", s.flag, Verdict::kRestored);
        continue;
      }
      report->Add(subject, "kcmp", s.flag, std::to_string(pids[i + 1]), Verdict::kRefused,
                  std::string("shares ") + s.what + " with pid " + std::to_string(pids[i + 1]) + " (" + s.flag +
                      " without CLONE_THREAD), which is not restored yet");
    }
    // The root may share with the process that created it, outside the tree.
    if (root_parent > 0 && !procs.empty() && Kcmp(procs[0].pid, root_parent, s.type) == 0)
      report->Add("pid " + std::to_string(procs[0].pid), "kcmp", s.flag, std::to_string(root_parent),
                  Verdict::kRefused,
                  std::string("shares ") + s.what + " with its parent pid " + std::to_string(root_parent) +
                      ", which is outside the tree (" + s.flag + "); that cannot be restored");
  }
  CRYO_RETURN_IF_ERROR(error);
  NoUndoList none;
  if (semaphores) CRYO_RETURN_IF_ERROR(none.Start().Prefixed("a process to compare semaphore undo lists with"));
  const pid_t self = none.pid();
  for (const SharingInput& p : procs) {
    for (size_t i = 0; i < p.tids.size(); ++i) {
      const pid_t tid = p.tids[i];
      const std::string subject =
          "pid " + std::to_string(p.pid) + (tid == p.pid ? "" : " thread " + std::to_string(tid));
      if (tid != p.pid)
        for (const Shared& s : kThreadShared) {
          if (Kcmp(p.pid, tid, s.type) == 0) {
            report->Tally(subject, "kcmp", s.flag, Verdict::kRestored);
            continue;
          }
          report->Add(subject, "kcmp", s.flag, "", Verdict::kRefused,
                      std::string("has ") + s.what + " of its own (unshare " + s.flag +
                          " in a thread), which is not restored yet");
        }
      // The SysV semaphore undo list is null until the task uses SEM_UNDO or
      // creates a thread (CLONE_SYSVSEM allocates an empty one): a list says
      // something only while semaphore sets exist.
      if (!semaphores || Kcmp(tid, self, KCMP_SYSVSEM) == 0) {
        report->Tally(subject, "kcmp", "SEM_UNDO", Verdict::kNotState);
        continue;
      }
      report->Add(subject, "kcmp", "SEM_UNDO", "", Verdict::kRefused,
                  "may have SysV semaphore adjustments to undo at exit (semop SEM_UNDO: it has an undo list and "
                  "semaphore sets exist), which are not restored yet");
    }
  }
  return Status::Ok();
}

}  // namespace cryo::audit
