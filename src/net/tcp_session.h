// The TCP connections of one dump and of one restore.
//
// Dump: each connection is locked (net_lock.h), then its socket is put in
// repair mode (TCP_REPAIR) only while its state is read, and taken out of it
// at once (SO_REUSEADDR put back: leaving repair clears it, tcp.c
// do_tcp_setsockopt); the lock keeps the connection still meanwhile. A
// duplicate of the socket is held until the dump ends. If the dump fails, or
// leaves the tree running, the lock goes before the tree runs again. In kill
// mode the sockets go back into repair mode just before the kill and the
// duplicates are closed after it, which closes them without a reset
// (tcp_disconnect); the lock stays for the restore. The guardian
// (tcp_guardian.h) is told before each change, and undoes it if cryo dies.
//
// Restore: the sockets made again stay in repair mode in cryo's hands until
// the tree is complete; then repair mode ends, the bytes that had not been
// sent are sent, and the image's lock goes. A failed restore closes them in
// repair mode (no reset) and removes the lock.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"
#include "net/net_lock.h"
#include "net/tcp_bulk_options.h"
#include "net/tcp_diag.h"
#include "net/tcp_fin.h"
#include "net/tcp_guardian.h"

namespace cryo {

class TcpDumpSession {
 public:
  TcpDumpSession();
  ~TcpDumpSession();  // Release() unless Keep() came first
  TcpDumpSession(const TcpDumpSession&) = delete;
  TcpDumpSession& operator=(const TcpDumpSession&) = delete;

  // Describing the tree: the connection `partial` (what is read without
  // repair mode), fd `target_fd` of `pid`, is read in repair mode later
  // (ReadDeferred); once per socket. No fd is held meanwhile: the tree is
  // seized, its fd tables do not change, and the socket is taken again then
  // (a dump of N sockets holds N fds, not 2N).
  Status Defer(const image::TcpSocket& partial, pid_t pid, int target_fd, const std::string& what);
  bool has_deferred() const;
  // Every deferred connection locked (before the tree is held), by one nft
  // run.
  Status LockDeferred();
  // The guardian told: the threads of `pid` are about to wait at cryo's
  // gate, whose flag is at `flag` (tcp_guardian.h).
  Status WillHold(pid_t pid, uint64_t flag);
  // With the tree held: each deferred connection put in repair mode, read,
  // taken out of it again (also when the read fails), and recorded.
  Status ReadDeferred();
  // The record of the socket `t` names (by inode), read in repair mode.
  Status Complete(image::TcpSocket* t) const;
  // Drops the packets of `conns` from now on (the table is made the first
  // time).
  Status Lock(const std::vector<LockedConnection>& conns);
  // Puts socket `ino` (held: ReadDeferred) in repair mode; returns its
  // SO_REUSEADDR value from before (repair mode forces address reuse,
  // do_tcp_setsockopt).
  Result<int> EnterRepair(uint64_t ino, const std::string& what);
  // Takes socket `ino` out of repair mode again, its SO_REUSEADDR put back.
  Status LeaveRepair(uint64_t ino, const std::string& what);
  // Every fd of one socket carries the same record (shared descriptions are
  // checked to agree): the first fd's, read once.
  void KeepRecord(image::TcpSocket t);
  // inet_diag's view of the tree's connections, asked once (tcp_diag.h).
  TcpDiagSnapshot& diag() { return diag_; }
  // The connections' options, read in bulk once (tcp_bulk_options.h).
  TcpBulkOptions& bulk_options() { return bulk_options_; }
  // The lock table ("" when no connection was locked).
  std::string lock_name() const;
  // Repair mode off on every held socket, the lock removed.
  Status Release();
  // Kill mode, the image complete, just before the tree of `pids` is
  // killed: the guardian told.
  Status PrepareKill(const std::set<pid_t>& pids);
  // Kill mode, the SIGKILLs sent: every socket in repair mode again, so that
  // its last close sends nothing.
  Status RepairBeforeClose();
  // Kill mode, once the tree is dead: the sockets closed in repair mode, the
  // lock kept (named in the image; its "dumping" marker removed).
  Status Keep();

 private:
  struct Held {
    uint64_t ino;
    UniqueFd fd;
    int reuseaddr;
    bool told;       // the guardian has its duplicate
    bool in_repair;  // put in repair mode (by EnterRepair)
  };
  struct Deferred {
    image::TcpSocket partial;
    pid_t pid;
    int target_fd;  // the fd number in `pid`
    std::string what;
  };
  // Each socket of `todo` taken from its process again (pidfd_getfd(2)),
  // checked to be the same socket, and held (HoldLocked).
  Status TakeDeferred(const std::vector<std::pair<uint64_t, Deferred*>>& todo);
  // Socket `ino` held by `fd` (mu_ held), its SO_REUSEADDR read and checked
  // not to be in repair mode.
  Status HoldLocked(uint64_t ino, UniqueFd fd, const std::string& what);
  // The guardian told of every socket of `todo` at once.
  Status TellGuardian(const std::vector<std::pair<uint64_t, Deferred*>>& todo);
  // Started with the first lock (mu_ held).
  Status StartGuardian();
  mutable std::mutex mu_;
  std::unique_ptr<TcpGuardian> guardian_;
  std::string lock_;
  std::vector<Held> held_;
  std::map<uint64_t, size_t> held_index_;  // inode -> index in held_
  std::map<uint64_t, image::TcpSocket> records_;
  std::map<uint64_t, Deferred> deferred_;
  TcpDiagSnapshot diag_;
  TcpBulkOptions bulk_options_;
  bool done_ = false;
};

// The session of the dump in progress (nullptr: none).
TcpDumpSession* CurrentTcpDump();

// Reads a connection's state in repair mode (net/tcp_socket.cc).
Status ReadTcpRepairState(int fd, image::TcpSocket* t, const std::string& what);

// Sends all of `data` on `fd` without blocking. The restored buffer may
// account the bytes differently from the original's (one segment per send in
// repair mode): when it is full, it is raised for the moment (SO_SNDBUFFORCE,
// or SO_RCVBUFFORCE for the receive queue of repair mode) and set back.
Status SendAll(int fd, const std::string& data, bool receive_queue, const std::string& what);

// Restore side (in cryo, where the fd pool makes the sockets).
struct PendingTcp {
  UniqueFd fd;          // a duplicate of the restored socket, in repair mode
  std::string unsent;   // bytes to send once repair mode is off
  bool reuseaddr = false;
  std::string what;
  TcpFins fins;         // a half-closed or closing connection's FINs
  // Bound while its address was not on this host (a migration, tcp_migrate.h):
  // the address (struct sockaddr_in or _in6) must be here before it resumes.
  bool nonlocal = false;
  std::string local;
};
// --tcp-close: connections are restored reset by their peer
// (net/tcp_socket.cc, ResetConnection).
void SetTcpCloseOnRestore(bool close);
bool TcpCloseOnRestore();
// Registers a restored socket (net/tcp_socket.cc).
void AddPendingTcp(PendingTcp p);
// Every restored connection leaves repair mode and sends what it had not
// sent; then the image's lock (`lock`, may be empty) is removed.
Status FinishTcpRestore(const std::string& lock);
// A failed restore: sockets closed in repair mode, the lock removed.
void AbandonTcpRestore(const std::string& lock);

// A tree of its own network namespace: the dump's lock went with that
// namespace, so the restore makes it again in the fresh one before its
// links are up (the script of `img`'s lock, "" if it has none); the usual
// end of the restore removes it there.
std::string FreshNetnsLockScript(const image::LoadedImage& img);

// Abandons the restore's connections unless Finish() succeeded.
class TcpRestoreGuard {
 public:
  explicit TcpRestoreGuard(std::string lock) : lock_(std::move(lock)) {}
  ~TcpRestoreGuard() {
    if (!done_) AbandonTcpRestore(lock_);
  }
  TcpRestoreGuard(const TcpRestoreGuard&) = delete;
  TcpRestoreGuard& operator=(const TcpRestoreGuard&) = delete;
  Status Finish() {
    Status s = FinishTcpRestore(lock_);
    done_ = s.ok();
    return s;
  }

 private:
  std::string lock_;
  bool done_ = false;
};

}  // namespace cryo
