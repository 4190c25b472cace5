// A sentinel: a process of cryo's own that outlives cryo, to undo what cryo
// did if cryo does not finish, also when cryo is killed with SIGKILL, which
// it cannot catch. cryo tells it, before each step, how to undo that step;
// it learns that cryo is gone when its channel reaches EOF (the kernel closes
// cryo's end however cryo ends), and then decides what to undo from what it
// was told last. Two are built on it: the restore's janitor (base/janitor.h)
// and the dump's guardian of TCP connections (net/tcp_guardian.h).
//
// The process is no child of cryo (double fork: nothing that reaps cryo's
// children waits for it), runs in a session of its own (a Ctrl-C at the
// terminal does not reach it) and ignores the signals of a terminal; it holds
// no fd of cryo's but its channel, an fd telling cryo when it exited, and
// stderr. The channel is a SOCK_SEQPACKET socketpair: one message per record,
// and a record may carry an fd (SCM_RIGHTS). A record sent before cryo dies
// is still read after: sending is telling.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace cryo {

// One record: a kind, a payload, maybe fds (at most kMaxSentinelFds).
struct SentinelRecord {
  char kind = 0;
  std::string payload;
  UniqueFd fd;                     // the first fd, if any
  std::vector<UniqueFd> more_fds;  // the others, in the order sent
};

// The most fds one record carries (SCM_MAX_FD is 253, net/scm.h).
constexpr size_t kMaxSentinelFds = 200;

// In the sentinel: the next record; false once cryo is gone (EOF) or the
// channel failed.
bool ReadSentinelRecord(int channel, SentinelRecord* out);
// Sends one record (with a duplicate of `fd` if not -1) on a SOCK_SEQPACKET
// socket; false (errno set) if it was not sent whole.
bool SendSentinelRecord(int channel, char kind, const std::string& payload, int fd);
// The same with `n` fds (at most kMaxSentinelFds).
bool SendSentinelRecord(int channel, char kind, const std::string& payload, const int* fds, size_t n);

class Sentinel {
 public:
  // Starts the process `name` (its comm), whose pid is none of `avoid`; it
  // runs `body(channel, cryo_pid)` and exits 0 after it.
  using Body = std::function<void(int channel, pid_t cryo)>;
  static Result<std::unique_ptr<Sentinel>> Start(const std::string& name, const std::set<pid_t>& avoid, Body body);
  // Hangs up (the body sees EOF) and waits (bounded) for the exit.
  ~Sentinel();
  Sentinel(const Sentinel&) = delete;
  Sentinel& operator=(const Sentinel&) = delete;

  // Sends a record (with a duplicate of `fd` if not -1). `who` names the
  // sentinel in errors.
  Status Send(char kind, const std::string& payload, int fd = -1);
  // Sends a record with duplicates of `fds` (at most kMaxSentinelFds).
  Status Send(char kind, const std::string& payload, const std::vector<int>& fds);
  // Closes cryo's end of the channel: the sentinel goes on alone.
  void Hangup();
  // Waits (bounded: 5 s) until the sentinel has exited.
  void AwaitExit();
  // Hangs up and does not wait: the sentinel lives on after cryo.
  void Release();
  pid_t pid() const { return pid_; }

 private:
  Sentinel(std::string name, int fd, int alive_fd) : name_(std::move(name)), fd_(fd), alive_fd_(alive_fd) {}
  std::string name_;
  pid_t pid_ = 0;
  int fd_;        // the channel
  int alive_fd_;  // EOF once the sentinel exited
};

}  // namespace cryo
