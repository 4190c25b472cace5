#include "net/tcp_guardian.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/nft.h"
#include "base/unique_fd.h"

namespace cryo {

namespace {

struct Guarded {
  UniqueFd fd;
  int reuseaddr;
};

// A process held at cryo's gate: its /proc/PID/mem (opened when told: the
// same address space whatever becomes of the pid) and the gate's flag.
struct Gate {
  UniqueFd mem;
  uint64_t flag;
};

// Sets the flag: the process's threads waiting at the gate go on. A flag
// set late (the threads gone on already) is harmless: it is padding of the
// vDSO nothing runs or reads (inject/injected_code.h).
void OpenGate(const Gate& g) {
  const uint64_t open = 1;
  if (g.mem.valid()) (void)::pwrite(g.mem.get(), &open, sizeof(open), static_cast<off_t>(g.flag));
}

// Whether `pid` is gone or a zombie.
bool Dead(pid_t pid) {
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  const size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && ((*stat)[paren + 2] == 'Z' || (*stat)[paren + 2] == 'X');
}

// After "kill": whether the kill got through (bounded: the SIGKILLs were
// sent, or cryo died before sending them and the tree runs on).
bool TreeKilled(const std::vector<pid_t>& pids) {
  const double deadline = Now() + 2;
  for (;;) {
    bool all = true;
    for (pid_t p : pids) all &= Dead(p);
    if (all) return true;
    if (Now() > deadline) return false;
    ::usleep(5000);
  }
}

// Repair mode off (if it is on: setting it off resets SO_REUSEADDR even on a
// socket not in repair mode), SO_REUSEADDR as it was. No window probe: the
// lock still drops it.
bool Unrepair(const Guarded& g) {
  int on = 0;
  socklen_t len = sizeof(on);
  if (::getsockopt(g.fd.get(), IPPROTO_TCP, TCP_REPAIR, &on, &len) != 0 || on != 1) return false;
  const int off = TCP_REPAIR_OFF_NO_WP;
  if (::setsockopt(g.fd.get(), IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) != 0) return false;
  if (g.reuseaddr > 0) ::setsockopt(g.fd.get(), SOL_SOCKET, SO_REUSEADDR, &g.reuseaddr, sizeof(g.reuseaddr));
  return true;
}

void Run(int channel, pid_t cryo) {
  std::vector<Guarded> sockets;
  std::vector<Gate> gates;
  std::vector<std::string> tables;
  std::vector<pid_t> kill_pids;
  bool killing = false, done = false;
  SentinelRecord rec;
  while (ReadSentinelRecord(channel, &rec)) {
    if (rec.kind == 'N') tables.push_back(rec.payload);
    if (rec.kind == 'S' && rec.fd.valid()) {
      // One SO_REUSEADDR value per socket, in the order of the fds.
      const std::vector<std::string_view> w = SplitWords(rec.payload);
      auto reuse = [&w](size_t i) { return i < w.size() ? std::atoi(std::string(w[i]).c_str()) : 0; };
      sockets.push_back({std::move(rec.fd), reuse(0)});
      for (size_t i = 0; i < rec.more_fds.size(); ++i) sockets.push_back({std::move(rec.more_fds[i]), reuse(i + 1)});
    }
    if (rec.kind == 'K') {
      killing = true;
      for (std::string_view w : SplitWords(rec.payload)) kill_pids.push_back(std::atoi(std::string(w).c_str()));
    }
    if (rec.kind == 'G') {
      const std::vector<std::string_view> w = SplitWords(rec.payload);
      if (w.size() == 2) {
        const std::string mem = "/proc/" + std::string(w[0]) + "/mem";
        gates.push_back({UniqueFd(::open(mem.c_str(), O_RDWR | O_CLOEXEC)),
                         std::strtoull(std::string(w[1]).c_str(), nullptr, 0)});
      }
    }
    if (rec.kind == 'X') done = true;
  }
  if (done) return;
  if (killing && TreeKilled(kill_pids)) {
    // The image is complete and owns the lock: it stays until the restore.
    // The duplicates close at exit, in repair mode.
    // Closed in repair mode (cryo may have died before it put them back in
    // it), they send nothing; the lock drops what they might.
    const int on = TCP_REPAIR_ON;
    for (const Guarded& g : sockets) ::setsockopt(g.fd.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on));
    std::string output;
    for (const std::string& t : tables) (void)RunNftCommand({"delete", "chain", "inet", t, "dumping"}, "", &output);
    dprintf(2, "cryo: the dump (pid %d) died after its image was complete and its tree killed: the network lock "
            "stays for the restore\n", cryo);
    return;
  }
  int released = 0, removed = 0;
  // Repair mode off first, then the tree held at the gate goes on: no
  // thread of it meets a socket in repair mode.
  for (const Guarded& g : sockets) released += Unrepair(g);
  for (const Gate& g : gates) OpenGate(g);
  for (const std::string& t : tables) {
    std::string output;
    Result<int> rc = RunNftCommand({"delete", "table", "inet", t}, "", &output);
    removed += rc.ok() && *rc == 0;
  }
  if (released || removed)
    dprintf(2, "cryo: the dump (pid %d) did not finish: %d TCP connection(s) taken out of repair mode, %d network "
            "lock(s) removed\n", cryo, released, removed);
}

}  // namespace

Result<std::unique_ptr<TcpGuardian>> TcpGuardian::Start() {
  CRYO_ASSIGN_OR_RETURN(auto sentinel, Sentinel::Start("cryo-guardian", {}, Run));
  return std::unique_ptr<TcpGuardian>(new TcpGuardian(std::move(sentinel)));
}

Status TcpGuardian::WillLock(const std::string& name) { return sentinel_->Send('N', name); }

Status TcpGuardian::WillRepair(int fd, int reuseaddr) { return sentinel_->Send('S', std::to_string(reuseaddr), fd); }

Status TcpGuardian::WillRepair(const std::vector<std::pair<int, int>>& sockets) {
  for (size_t from = 0; from < sockets.size(); from += kMaxSentinelFds) {
    std::vector<int> fds;
    std::string reuse;
    for (size_t i = from; i < sockets.size() && i < from + kMaxSentinelFds; ++i) {
      fds.push_back(sockets[i].first);
      reuse += (reuse.empty() ? "" : " ") + std::to_string(sockets[i].second);
    }
    CRYO_RETURN_IF_ERROR(sentinel_->Send('S', reuse, fds));
  }
  return Status::Ok();
}

Status TcpGuardian::WillHold(pid_t pid, uint64_t flag) {
  return sentinel_->Send('G', std::to_string(pid) + " " + std::to_string(flag));
}

Status TcpGuardian::WillKill(const std::set<pid_t>& pids) {
  std::string list;
  for (pid_t p : pids) list += std::to_string(p) + " ";
  return sentinel_->Send('K', list);
}

void TcpGuardian::Done() {
  (void)sentinel_->Send('X', "");
  sentinel_->Hangup();
  sentinel_->AwaitExit();
}

}  // namespace cryo
