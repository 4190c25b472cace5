// Seccomp: each thread's mode and filter chain (seccomp(2)), dumped with
// ptrace and installed again by the restorer blob as its last act before the
// final stop.
//
// Dump. PTRACE_SECCOMP_GET_FILTER gives a thread's classic BPF filters by
// index (0: the oldest), PTRACE_SECCOMP_GET_METADATA their flags (only
// SECCOMP_FILTER_FLAG_LOG is kept by the kernel). Both need CAP_SYS_ADMIN and
// a tracer not under seccomp itself. The thread's filters are suspended
// (PTRACE_O_SUSPEND_SECCOMP) before cryo's first remote system call, which a
// filter could refuse or punish; a detach ends the suspension.
//
// Sharing. The kernel does not show whether two threads share a filter (no
// kcmp type): threads whose chains start with the same programs are taken to
// share those filters, which is what a thread created after the filter was
// installed, or SECCOMP_FILTER_FLAG_TSYNC, makes. At restore the filters every
// thread of a process has in common are installed by the leader before it
// creates the other threads (clone copies the filter pointer: the same kernel
// objects, so a later TSYNC works again); each thread installs the rest of
// its own chain itself.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "inject/remote_syscall.h"
#include "restorer/restorer_args.h"
#include "seize/seize.h"

namespace cryo {

struct SeccompThread {
  pid_t tid = 0;
  uint32_t mode = 0;            // 0 none, 1 strict, 2 filter
  std::vector<uint32_t> chain;  // indices into SeccompState::filters, oldest first
};

struct SeccompState {
  std::vector<image::SeccompFilter> filters;
  std::vector<SeccompThread> threads;  // in SeizedProcess::threads() order
  bool any() const;
};

// Reads the seccomp state of every thread of a seized process and suspends
// the filters of the threads that have some, for cryo's remote calls.
// Refuses, by name, what a restore could not give back: a filter that can
// hand a system call to a supervisor (SECCOMP_RET_USER_NOTIF: its listener
// fd is not restored) or returns a computed action. Nothing to do when cryo
// itself runs under seccomp (the audit compares the tree's with cryo's).
Result<SeccompState> DumpSeccomp(SeizedProcess& proc);

// The calls a thread of the process would make on its own were cryo killed
// (inject/remote_syscall.h UntracedCallCheck), run through its filters
// (seccomp_bpf.h) or strict mode: refused by name when a filter would kill
// the task or trap (SIGSYS) on any of them, or would keep one from running
// that the way back needs (rt_sigreturn, the restart path, the gate's
// sleep). Made before cryo's first remote call in the process.
class SeccompCallCheck : public UntracedCallCheck {
 public:
  SeccompCallCheck(pid_t pid, const SeccompState& state) : pid_(pid), state_(state) {}
  Status Check(pid_t tid, long nr, const uint64_t args[6], bool needed) const override;

 private:
  pid_t pid_;
  const SeccompState& state_;
};

// Records `state` into `core`, whose threads are recorded in the same order.
Status StoreSeccomp(const SeccompState& state, image::ProcessCore* core);

// Why a filter program cannot be restored, or "" (also used by validation).
std::string SeccompProgramProblem(const std::string& program);

// Restore: bytes the seccomp part of the blob's arguments takes, and filling
// it at byte offset `off` of `a` (the leader's and every thread's part).
uint64_t SeccompArgBytes(const image::ProcessCore& core);
Status FillSeccompArgs(const image::ProcessCore& core, restorer::Args* a, uint64_t off);

}  // namespace cryo
