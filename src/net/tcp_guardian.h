// The guardian of a dump's TCP connections: a sentinel (base/sentinel.h)
// that undoes what the dump does to the tree's sockets and to the network if
// cryo does not finish, also when cryo is killed with SIGKILL or crashes.
//
// Before each change cryo tells it how to undo it: the name of the nftables
// table before the table is made (net_lock.h), and a duplicate of each socket
// (the same open file description, so the same socket) with its SO_REUSEADDR
// value before TCP_REPAIR goes on (leaving repair mode clears SO_REUSEADDR,
// do_tcp_setsockopt in net/ipv4/tcp.c). When its channel reaches EOF without
// "done":
//   - the tree runs on (the dump failed, was interrupted, or left it running;
//     or cryo died before its kill): every socket still in repair mode leaves
//     it, its SO_REUSEADDR put back, and the tables are removed;
//   - cryo had said "kill" (the image complete, the tree about to be killed)
//     and every process of the tree is gone: the sockets are closed still in
//     repair mode (no reset, tcp_disconnect) and the table stays for the
//     restore, handed over to the image (its "dumping" marker removed).
// On "done" (cryo undid or handed over everything itself) it exits doing
// nothing but closing its duplicates.
//
// The kernel lets a dead tracer's tracees run at once (exit_ptrace), so
// while a live tree's sockets are in repair mode (their state read) every
// thread of the tree waits at cryo's gate (inject/injected_code.h,
// dump/tcp_hold.h), a loop that, untraced, sleeps until a flag in the
// process's copy of cryo's code is set: the guardian is told each process
// and flag before its threads go there, and sets the flags only once every
// socket is out of repair mode. In kill mode the sockets go back into repair
// mode only once the SIGKILLs are sent (no killed task runs again).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/sentinel.h"
#include "base/status.h"

namespace cryo {

class TcpGuardian {
 public:
  static Result<std::unique_ptr<TcpGuardian>> Start();
  // Not done: the guardian undoes what it was told about; awaited (bounded).
  ~TcpGuardian() = default;

  // Before the table `name` is made.
  Status WillLock(const std::string& name);
  // Before TCP_REPAIR goes on on `fd`, whose SO_REUSEADDR is `reuseaddr`.
  Status WillRepair(int fd, int reuseaddr);
  // The same for many sockets at once, as (fd, SO_REUSEADDR) pairs: a
  // record per kMaxSentinelFds sockets rather than per socket.
  Status WillRepair(const std::vector<std::pair<int, int>>& sockets);
  // The threads of `pid` are about to wait at cryo's gate, whose flag is at
  // `flag` in its memory.
  Status WillHold(pid_t pid, uint64_t flag);
  // The image is complete and the tree of `pids` is about to be killed.
  Status WillKill(const std::set<pid_t>& pids);
  // cryo undid (or handed over to the image) everything itself: the guardian
  // exits doing nothing; awaited (bounded), so that its duplicates are closed
  // when this returns.
  void Done();
  pid_t pid() const { return sentinel_->pid(); }

 private:
  explicit TcpGuardian(std::unique_ptr<Sentinel> s) : sentinel_(std::move(s)) {}
  std::unique_ptr<Sentinel> sentinel_;
};

}  // namespace cryo
