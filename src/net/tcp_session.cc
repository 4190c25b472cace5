#include "net/tcp_session.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include "base/fd_limit.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "net/tcp_migrate.h"

namespace cryo {

namespace {

std::atomic<TcpDumpSession*> current{nullptr};

// A fault point of the TCP steps of a dump, logged with its number: the tests
// kill cryo at each (base/interrupt.h). A step passed once per socket
// (`per_socket`) is logged the first time only (test_tcp.py's fault
// campaigns read the points of a dump of one connection): a line per socket
// cost a write(2) each in a dump of thousands of sockets with a log file.
void TcpFaultPoint(const char* step, bool per_socket = false) {
  FaultPoint();
  if (per_socket) {
    static std::mutex mu;
    static std::set<std::string> logged;
    std::lock_guard<std::mutex> l(mu);
    if (!logged.insert(step).second) return;
  }
  LOG_DEBUG("TCP fault point %llu: %s", static_cast<unsigned long long>(FaultPointsPassed()), step);
}
std::mutex pending_mu;
std::vector<PendingTcp> pending;

// `off`: TCP_REPAIR_OFF (a window probe goes out) or TCP_REPAIR_OFF_NO_WP.
Status RepairOff(int fd, int reuseaddr, const std::string& what, int off = TCP_REPAIR_OFF) {
  if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) != 0)
    return Status::FromErrno("TCP_REPAIR off on " + what);
  // Leaving repair mode resets sk_reuse (do_tcp_setsockopt).
  if (reuseaddr > 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuseaddr, sizeof(reuseaddr)) != 0)
    return Status::FromErrno("SO_REUSEADDR on " + what);
  return Status::Ok();
}

}  // namespace

Status SendAll(int fd, const std::string& data, bool receive_queue, const std::string& what) {
  if (data.empty()) return Status::Ok();
  const int get = receive_queue ? SO_RCVBUF : SO_SNDBUF;
  const int force = receive_queue ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
  // The size to set back, read only when the buffer is full (most queues
  // fit: a call less per queue of each connection restored). Queueing bytes
  // does not change it (sk_sndbuf/sk_rcvbuf are limits, not fill levels).
  int before = 0;
  bool raised = false;
  size_t done = 0;
  Status st;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == ENOMEM) && !raised) {
      socklen_t len = sizeof(before);
      if (::getsockopt(fd, SOL_SOCKET, get, &before, &len) != 0) {
        st = Status::FromErrno("buffer size of " + what);
        break;
      }
      // The kernel doubles what is set (socket(7)): room for the rest twice over.
      const size_t want = static_cast<size_t>(before) + 2 * (data.size() - done) + (1 << 20);
      const int v = static_cast<int>(std::min<size_t>(want, 1u << 30));
      if (::setsockopt(fd, SOL_SOCKET, force, &v, sizeof(v)) != 0) {
        st = Status::FromErrno("raising the buffer of " + what);
        break;
      }
      raised = true;
      continue;
    }
    if (n <= 0) {
      st = Status::FromErrno(std::string("queueing ") + std::to_string(data.size() - done) + " bytes (" +
                             (receive_queue ? "received" : "to send") + ") on " + what);
      break;
    }
    done += static_cast<size_t>(n);
  }
  const int half = before / 2;  // getsockopt reports the doubled value
  if (raised && ::setsockopt(fd, SOL_SOCKET, force, &half, sizeof(half)) != 0 && st.ok())
    st = Status::FromErrno("setting the buffer of " + what + " back");
  return st;
}

TcpDumpSession::TcpDumpSession() { current = this; }

TcpDumpSession::~TcpDumpSession() {
  if (!done_) {
    Status s = Release();
    if (!s.ok()) LOG_WARN("TCP connections after the dump: %s", s.ToString().c_str());
  }
  TcpDumpSession* me = this;
  current.compare_exchange_strong(me, nullptr);
}

Status TcpDumpSession::StartGuardian() {
  if (guardian_) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(guardian_, TcpGuardian::Start());
  LOG_DEBUG("TCP guardian started (pid %d)", guardian_->pid());
  return Status::Ok();
}

Status TcpDumpSession::Defer(const image::TcpSocket& partial, pid_t pid, int target_fd, const std::string& what) {
  std::lock_guard<std::mutex> l(mu_);
  if (deferred_.count(partial.ino())) return Status::Ok();
  deferred_.emplace(partial.ino(), Deferred{partial, pid, target_fd, what});
  return Status::Ok();
}

bool TcpDumpSession::has_deferred() const {
  std::lock_guard<std::mutex> l(mu_);
  return !deferred_.empty();
}

Status TcpDumpSession::LockDeferred() {
  std::vector<LockedConnection> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [ino, d] : deferred_) all.push_back({d.partial.local(), d.partial.peer()});
  }
  return all.empty() ? Status::Ok() : Lock(all);
}

Status TcpDumpSession::WillHold(pid_t pid, uint64_t flag) {
  std::lock_guard<std::mutex> l(mu_);
  CRYO_RETURN_IF_ERROR(StartGuardian());
  CRYO_RETURN_IF_ERROR(guardian_->WillHold(pid, flag));
  TcpFaultPoint("guardian told of a held process");
  return Status::Ok();
}

Status TcpDumpSession::TakeDeferred(const std::vector<std::pair<uint64_t, Deferred*>>& todo) {
  std::lock_guard<std::mutex> l(mu_);
  // One pidfd per process at a time (the sockets come in the order of their
  // inodes, not of their processes: pidfds of processes met are kept).
  std::map<pid_t, UniqueFd> pidfds;
  for (const auto& [ino, d] : todo) {
    if (held_index_.count(ino)) continue;
    auto it = pidfds.find(d->pid);
    if (it == pidfds.end()) {
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, d->pid, 0)));
      if (!pidfd.valid()) return FdLimitError("pidfd_open of pid " + std::to_string(d->pid) + " for " + d->what);
      it = pidfds.emplace(d->pid, std::move(pidfd)).first;
    }
    // Close-on-exec (pidfd_getfd(2)): nft and the guardian do not inherit it.
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, it->second.get(), d->target_fd, 0)));
    if (!fd.valid()) return FdLimitError("pidfd_getfd of " + d->what);
    // The tree is held: the fd is the socket described (checked, not assumed).
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat of " + d->what);
    if (static_cast<uint64_t>(st.st_ino) != ino)
      return Status::Error("internal: " + d->what + " is another socket (inode " + std::to_string(st.st_ino) +
                           ") than the one described (inode " + std::to_string(ino) + ")");
    CRYO_RETURN_IF_ERROR(HoldLocked(ino, std::move(fd), d->what));
  }
  return Status::Ok();
}

Status TcpDumpSession::ReadDeferred() {
  std::vector<std::pair<uint64_t, Deferred*>> todo;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [ino, d] : deferred_) todo.push_back({ino, &d});
  }
  CRYO_RETURN_IF_ERROR(TakeDeferred(todo));
  CRYO_RETURN_IF_ERROR(TellGuardian(todo));
  for (auto& [ino, d] : todo) {
    image::TcpSocket t = std::move(d->partial);  // read once: the record is kept (KeepRecord)
    CRYO_ASSIGN_OR_RETURN(const int reuseaddr, EnterRepair(ino, d->what));
    t.set_reuseaddr(reuseaddr != 0);
    int fd = -1;
    {
      std::lock_guard<std::mutex> l(mu_);
      fd = held_[held_index_.at(ino)].fd.get();
    }
    Status read = ReadTcpRepairState(fd, &t, d->what);
    // Out of repair mode whatever the read gave, before the tree is let go.
    Status left = LeaveRepair(ino, d->what);
    CRYO_RETURN_IF_ERROR(read);
    CRYO_RETURN_IF_ERROR(left);
    KeepRecord(std::move(t));
  }
  return Status::Ok();
}

Status TcpDumpSession::Complete(image::TcpSocket* t) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = records_.find(t->ino());
  if (it == records_.end())
    return Status::Error("internal: TCP socket inode " + std::to_string(t->ino()) + " was not read in repair mode");
  *t = it->second;
  return Status::Ok();
}

Status TcpDumpSession::Lock(const std::vector<LockedConnection>& conns) {
  std::lock_guard<std::mutex> l(mu_);
  const bool create = lock_.empty();
  if (create) {
    CRYO_RETURN_IF_ERROR(StartGuardian());
    // The tables of dumps that died (kill -9) go first.
    std::vector<std::string> stale;
    CRYO_RETURN_IF_ERROR(RemoveStaleNetLocks(&stale));
    for (const std::string& s : stale) LOG_WARN("removed network lock %s, left by a dump that died", s.c_str());
  }
  const std::string name = create ? NewNetLockName() : lock_;
  // Named before it is made: a failure half-way still removes it, and so
  // does the guardian if cryo dies.
  if (create) CRYO_RETURN_IF_ERROR(guardian_->WillLock(name));
  lock_ = name;
  TcpFaultPoint("lock table named");
  Status s = AddNetLock(name, conns, create);
  TcpFaultPoint("lock table made");
  return s;
}

Status TcpDumpSession::HoldLocked(uint64_t ino, UniqueFd fd, const std::string& what) {
  if (held_index_.count(ino)) return Status::Ok();
  int reuseaddr = 0;
  socklen_t len = sizeof(reuseaddr);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &reuseaddr, &len) != 0)
    return Status::FromErrno("SO_REUSEADDR of " + what);
  int repair = 0;
  len = sizeof(repair);
  if (::getsockopt(fd.get(), IPPROTO_TCP, TCP_REPAIR, &repair, &len) != 0) return Status::FromErrno("TCP_REPAIR of " + what);
  if (repair)
    return Status::Error(what + " is in TCP_REPAIR mode already (another checkpointer at work on it?), which cryo "
                         "does not checkpoint");
  held_index_[ino] = held_.size();
  held_.push_back({ino, std::move(fd), reuseaddr, false, false});
  return Status::Ok();
}

Status TcpDumpSession::TellGuardian(const std::vector<std::pair<uint64_t, Deferred*>>& todo) {
  std::lock_guard<std::mutex> l(mu_);
  if (!guardian_) return Status::Error("internal: TCP connections put in repair mode without a guardian");
  std::vector<std::pair<int, int>> tell;
  std::vector<size_t> told;
  for (const auto& [ino, d] : todo) {
    auto it = held_index_.find(ino);
    if (it == held_index_.end()) return Status::Error("internal: " + d->what + " told to the guardian before it was held");
    const size_t i = it->second;
    if (held_[i].told) continue;
    tell.push_back({held_[i].fd.get(), held_[i].reuseaddr});
    told.push_back(i);
  }
  // Every socket at once, before the first goes into repair mode (a record
  // per kMaxSentinelFds sockets: one per socket cost a wakeup of the
  // guardian each). Told is enough: the guardian takes out of repair mode
  // only a socket that is in it.
  CRYO_RETURN_IF_ERROR(guardian_->WillRepair(tell));
  for (size_t i : told) held_[i].told = true;
  TcpFaultPoint("guardian told of the sockets");
  return Status::Ok();
}

Result<int> TcpDumpSession::EnterRepair(uint64_t ino, const std::string& what) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = held_index_.find(ino);
  if (it == held_index_.end()) return Status::Error("internal: " + what + " put in repair mode before it was held");
  Held& h = held_[it->second];
  const int reuseaddr = h.reuseaddr;
  if (h.in_repair) return reuseaddr;
  if (!guardian_) return Status::Error("internal: " + what + " put in repair mode without a guardian");
  if (!h.told) {
    CRYO_RETURN_IF_ERROR(guardian_->WillRepair(h.fd.get(), reuseaddr));
    h.told = true;
    TcpFaultPoint("guardian told of a socket", /*per_socket=*/true);
  }
  const int on = TCP_REPAIR_ON;
  if (::setsockopt(h.fd.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) != 0) return Status::FromErrno("TCP_REPAIR on " + what);
  h.in_repair = true;
  TcpFaultPoint("socket in repair mode", /*per_socket=*/true);
  return reuseaddr;
}

Status TcpDumpSession::LeaveRepair(uint64_t ino, const std::string& what) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = held_index_.find(ino);
  if (it == held_index_.end()) return Status::Error("internal: " + what + " left repair mode without entering it");
  const Held& h = held_[it->second];
  // No window probe: the lock would drop it.
  CRYO_RETURN_IF_ERROR(RepairOff(h.fd.get(), h.reuseaddr, what, TCP_REPAIR_OFF_NO_WP));
  TcpFaultPoint("socket out of repair mode", /*per_socket=*/true);
  return Status::Ok();
}

void TcpDumpSession::KeepRecord(image::TcpSocket t) {
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t ino = t.ino();
  records_.emplace(ino, std::move(t));
}

std::string TcpDumpSession::lock_name() const {
  std::lock_guard<std::mutex> l(mu_);
  return lock_;
}

Status TcpDumpSession::Release() {
  std::lock_guard<std::mutex> l(mu_);
  done_ = true;
  Status first;
  for (Held& h : held_) {
    // Only those still in repair mode (a failure mid-way): leaving repair
    // mode clears SO_REUSEADDR, a socket not in it keeps its own.
    int on = 0;
    socklen_t len = sizeof(on);
    if (::getsockopt(h.fd.get(), IPPROTO_TCP, TCP_REPAIR, &on, &len) != 0 || !on) continue;
    Status s = RepairOff(h.fd.get(), h.reuseaddr, "a TCP connection of the tree", TCP_REPAIR_OFF_NO_WP);
    if (!s.ok() && first.ok()) first = s;
    TcpFaultPoint("release: socket out of repair mode", /*per_socket=*/true);
  }
  if (!lock_.empty()) {
    Status s = RemoveNetLock(lock_);
    if (!s.ok() && first.ok()) first = s;
    TcpFaultPoint("release: lock removed");
    lock_.clear();
  }
  held_.clear();
  held_index_.clear();
  // Undone by cryo: the guardian goes, doing nothing (else it undoes the rest).
  if (first.ok() && guardian_) guardian_->Done();
  guardian_.reset();
  return first;
}

Status TcpDumpSession::PrepareKill(const std::set<pid_t>& pids) {
  std::lock_guard<std::mutex> l(mu_);
  if (held_.empty()) return Status::Ok();
  CRYO_RETURN_IF_ERROR(guardian_->WillKill(pids));
  TcpFaultPoint("kill: guardian told");
  return Status::Ok();
}

Status TcpDumpSession::RepairBeforeClose() {
  std::lock_guard<std::mutex> l(mu_);
  const int on = TCP_REPAIR_ON;
  for (Held& h : held_) {
    if (::setsockopt(h.fd.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) != 0)
      return Status::FromErrno("TCP_REPAIR on a TCP connection of the tree before the kill");
    TcpFaultPoint("kill: socket in repair mode", /*per_socket=*/true);
  }
  return Status::Ok();
}

Status TcpDumpSession::Keep() {
  std::lock_guard<std::mutex> l(mu_);
  done_ = true;
  held_.clear();  // closed in repair mode: no reset reaches the peer
  held_index_.clear();
  // The table is the image's now, no longer a dump's.
  Status s = lock_.empty() ? Status::Ok() : MarkNetLockKept(lock_);
  TcpFaultPoint("keep: lock handed over");
  // The guardian closes its duplicates (the last ones, in repair mode) and
  // exits: the connections are free for a restore when this returns.
  if (s.ok() && guardian_) guardian_->Done();
  guardian_.reset();
  return s;
}

TcpDumpSession* CurrentTcpDump() { return current; }

namespace {
std::atomic<bool> tcp_close{false};
}  // namespace

void SetTcpCloseOnRestore(bool close) { tcp_close = close; }
bool TcpCloseOnRestore() { return tcp_close; }

void AddPendingTcp(PendingTcp p) {
  std::lock_guard<std::mutex> l(pending_mu);
  pending.push_back(std::move(p));
}

Status FinishTcpRestore(const std::string& lock) {
  std::vector<PendingTcp> mine;
  {
    std::lock_guard<std::mutex> l(pending_mu);
    mine.swap(pending);
  }
  // Every connection exists now: the FINs come back (tcp_fin.h).
  for (PendingTcp& p : mine) CRYO_RETURN_IF_ERROR(RestoreFinsInRepair(p.fd.get(), p.fins, p.what));
  // A migrated connection resumes only where its address is (tcp_migrate.h).
  for (PendingTcp& p : mine)
    if (p.nonlocal) CRYO_RETURN_IF_ERROR(CheckAddressHere(p.local, p.what));
  for (PendingTcp& p : mine) {
    CRYO_RETURN_IF_ERROR(RepairOff(p.fd.get(), p.reuseaddr ? 1 : 0, p.what));
    // Never sent by the original: sent now, as the program had asked.
    CRYO_RETURN_IF_ERROR(SendAll(p.fd.get(), p.unsent, false, p.what));
    CRYO_RETURN_IF_ERROR(RestoreFinsAfterRepair(p.fd.get(), p.fins, p.what));
  }
  mine.clear();
  if (!lock.empty()) CRYO_RETURN_IF_ERROR(RemoveNetLock(lock));
  return Status::Ok();
}

std::string FreshNetnsLockScript(const image::LoadedImage& img) {
  const auto& f = img.inventory.features();
  if (img.inventory.net_lock().empty() || std::find(f.begin(), f.end(), "net-ns") == f.end()) return "";
  std::vector<LockedConnection> conns;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& fd : p.fds.fds())
      if (fd.kind() == image::FD_TCP_SOCKET) conns.push_back({fd.tcp_socket().local(), fd.tcp_socket().peer()});
  return NetLockScript(img.inventory.net_lock(), conns);
}

void AbandonTcpRestore(const std::string& lock) {
  {
    std::lock_guard<std::mutex> l(pending_mu);
    pending.clear();  // closed in repair mode: no reset
  }
  if (lock.empty()) return;
  Status s = RemoveNetLock(lock);
  if (!s.ok()) LOG_WARN("%s", s.ToString().c_str());
}

}  // namespace cryo
