// What the probes of `cryo check` share: children forked, paused, seized,
// killed and reaped by the probe that made them, with bounded waits.
#pragma once

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "base/status.h"
#include "base/unique_fd.h"
#include "check/probes.h"

namespace cryo::check::probe {

using Clock = std::chrono::steady_clock;

constexpr int kChildTimeoutMs = 1000;  // a probe child must stop or exit within this
constexpr int kReapTimeoutMs = 2000;   // a SIGKILLed child must be reaped within this

// waitpid() polled until `timeout_ms` passes. Returns the pid, 0 on timeout, -1 on error.
pid_t WaitPidBounded(pid_t pid, int* status, int options, int timeout_ms);
void KillAndReap(pid_t pid);

// Runs fn() in a forked child and returns its exit code. fn runs after fork() in a
// possibly multi-threaded parent, so it sticks to system calls (no allocation).
template <typename Fn>
Result<int> RunInChild(const char* what, Fn fn) {
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(std::string("fork for ") + what);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::_exit(fn());
  }
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, 0, kChildTimeoutMs);
  if (r != pid) {
    int err = errno;
    KillAndReap(pid);
    return r == 0 ? Status::Error(std::string(what) + ": child did not exit in time")
                  : Status::Errno(err, std::string("waitpid for ") + what);
  }
  if (WIFSIGNALED(status)) return Status::Error(std::string(what) + ": child killed by signal " + std::to_string(WTERMSIG(status)));
  return WEXITSTATUS(status);
}


// A page-aligned buffer the paused child fills with a pid-specific marker, so a
// read of the child's copy is told apart from the parent's (which stays zero).
extern char g_child_marker[64];

// Writes "cryo-probe-child:<pid>" into buf (async-signal-safe).
void FormatMarker(char* buf, size_t size, pid_t pid);

// A forked child that fills g_child_marker, reports ready through a pipe it keeps
// open (child_fd), then sleeps until the destructor kills and reaps it.
class PausedChild {
 public:
  static Result<PausedChild> Start();

  PausedChild(PausedChild&& o) noexcept : pid_(std::exchange(o.pid_, -1)), ready_(std::move(o.ready_)), child_fd_(o.child_fd_) {}
  PausedChild& operator=(PausedChild&&) = delete;
  ~PausedChild() {
    if (pid_ > 0) KillAndReap(pid_);
  }

  pid_t pid() const { return pid_; }
  int ready_fd() const { return ready_.get(); }  // our end of the pipe
  int child_fd() const { return child_fd_; }     // the child's end, as numbered in the child

 private:
  PausedChild(pid_t pid, UniqueFd ready, int child_fd) : pid_(pid), ready_(std::move(ready)), child_fd_(child_fd) {}
  pid_t pid_;
  UniqueFd ready_;
  int child_fd_;
};

// Seizes `pid` and waits for the PTRACE_EVENT_STOP that PTRACE_INTERRUPT causes.
Status SeizeAndInterrupt(pid_t pid);

// `p` failed with `st`.
Probe Fail(Probe p, const Status& st);
std::string Hex(uint64_t v);

// An anonymous private mapping, unmapped on destruction.
class Mapping {
 public:
  explicit Mapping(size_t size) : size_(size) {
    void* a = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    addr_ = a == MAP_FAILED ? nullptr : static_cast<char*>(a);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }
  char* addr() const { return addr_; }

 private:
  char* addr_ = nullptr;
  size_t size_;
};

// The probes, one concern a file: probes_ptrace.cc, probes_memory.cc,
// probes_net.cc, probes_process.cc.
Probe ProbePtraceSeize();
Probe ProbeXsave();
Probe ProbeProcessVmReadv();
Probe ProbePidfdGetfd();
Probe ProbeClone3SetTid();
Probe ProbePrSetMmMap();
Probe ProbeUserfaultfdWpAsync();
Probe ProbePagemapScan();
Probe ProbeMadvCollapse();
Probe ProbeSoftDirty();
Probe ProbeTcpRepair();
Probe ProbeSockDiag();
Probe ProbeBpfIterUdp();
Probe ProbeBpfIterTcp();
Probe ProbeNamespaces();
Probe ProbeCapabilities();
Probe ProbeMembarrierRegistrations();
Probe ProbeTimerRestoreIds();
Probe ProbeEventfdSemaphore();

}  // namespace cryo::check::probe
