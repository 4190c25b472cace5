#include "base/janitor.h"

#include <poll.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/nft.h"
#include "base/unique_fd.h"

namespace cryo {

namespace {

Janitor* g_current = nullptr;

// The fields of /proc/PID/stat after the command name (which may hold spaces
// and parentheses, so it ends at the last ')'): [0] is field 3 of proc(5),
// the state; empty when the process is gone.
std::vector<std::string> StatFields(pid_t pid) {
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return {};
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return {};
  std::vector<std::string> fields;
  for (std::string_view w : SplitWords(std::string_view(*stat).substr(paren + 2))) fields.emplace_back(w);
  return fields;
}

// Field 22 of /proc/PID/stat: when the process started (clock ticks since boot).
std::string StartTime(pid_t pid) {
  const std::vector<std::string> f = StatFields(pid);
  return f.size() > 19 ? f[19] : "";
}

// The process a thread (by id, as /proc shows it) belongs to; 0 if gone.
pid_t TgidOf(const std::string& tid) {
  auto text = ReadFileToString("/proc/" + tid + "/status");
  if (!text.ok()) return 0;
  for (std::string_view line : SplitLines(*text))
    if (line.substr(0, 5) == "Tgid:") return static_cast<pid_t>(std::atoi(std::string(Trim(line.substr(5))).c_str()));
  return 0;
}

// cryo said "done", then its pipe closed before "released": whether the tree
// of `root` runs on (its release done), or dies with cryo. A task cryo still
// traced is killed once cryo's exit gets to its tracees (exit_ptrace, after
// its files are closed, kernel/exit.c), which sends SIGKILL and then detaches
// it: it shows no tracer while it dies, and the SIGKILL may already be taken
// from its pending set. So a root counts as released only once it has shown
// no tracer, no pending SIGKILL and no PF_EXITING for 200 ms on end (a killed
// task is gone within that). Bounded: 5 s.
bool ReleasedAlive(pid_t root, pid_t cryo) {
  const std::string dir = "/proc/" + std::to_string(root) + "/";
  const double deadline = Now() + 5;
  double untraced_since = 0;
  for (;;) {
    auto text = ReadFileToString(dir + "status");
    const std::vector<std::string> stat = StatFields(root);
    if (!text.ok() || stat.empty()) return false;  // gone: killed with cryo
    std::string state, tracer;
    bool dying = false;
    for (std::string_view line : SplitLines(*text)) {
      if (line.substr(0, 6) == "State:") state = std::string(Trim(line.substr(6)));
      if (line.substr(0, 10) == "TracerPid:") tracer = std::string(Trim(line.substr(10)));
      if (line.substr(0, 7) == "SigPnd:" || line.substr(0, 7) == "ShdPnd:")
        dying |= (std::strtoull(std::string(Trim(line.substr(7))).c_str(), nullptr, 16) >> (SIGKILL - 1)) & 1;
    }
    // Field 9 of stat, the task's flags: PF_EXITING (0x4).
    dying |= stat.size() > 6 && (std::strtoull(stat[6].c_str(), nullptr, 10) & 0x4);
    if (state.empty() || state[0] == 'Z' || state[0] == 'X' || dying) return false;
    if (tracer != "0") {
      untraced_since = 0;
      // TracerPid is the tracing thread's id: cryo's until its exit gets here.
      if (Now() > deadline) return TgidOf(tracer) != cryo;
    } else if (!untraced_since) {
      untraced_since = Now();
    } else if (Now() - untraced_since >= 0.2) {
      return true;
    } else if (Now() > deadline) {
      return true;
    }
    ::usleep(2000);
  }
}

// Whether the task `pid` is gone or a zombie (dead, not yet reaped).
bool Dead(pid_t pid) {
  const std::vector<std::string> stat = StatFields(pid);
  return stat.empty() || stat[0] == "Z" || stat[0] == "X";
}

// cryo ended before the release: the kernel kills its tracees when cryo's
// exit gets to them (exit_ptrace, after exit_files closed the channel,
// kernel/exit.c), and they die a moment later. Waits until cryo has exited
// (its pidfd polls readable once it is a zombie, pidfd_open(2)), then until
// every task of the restore is gone or a zombie. Bounded: 5 s in all (a
// pid some other process took meanwhile only costs the wait).
void AwaitTreeGone(int cryo_pidfd, std::vector<pid_t> tasks) {
  const double deadline = Now() + 5;
  if (cryo_pidfd >= 0) {
    struct pollfd p = {cryo_pidfd, POLLIN, 0};
    while (::poll(&p, 1, 5000) < 0 && errno == EINTR && Now() < deadline) {
    }
  }
  while (!tasks.empty() && Now() < deadline) {
    std::erase_if(tasks, Dead);
    if (!tasks.empty()) ::usleep(2000);
  }
}

// `nft delete table inet NAME` (a network lock of the restore).
bool RemoveNftTable(const std::string& name) {
  std::string output;
  Result<int> rc = RunNftCommand({"delete", "table", "inet", name}, "", &output);
  return rc.ok() && *rc == 0;
}

// The janitor process: collects what cryo creates until its pipe closes.
void Run(int channel, pid_t cryo) {
  // Opened while cryo runs (it started this process and waits for its
  // report); fails only if cryo is already gone.
  const UniqueFd cryo_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, cryo, 0)));
  std::vector<pid_t> tasks;
  bool orderly = false;  // cryo hung up itself, its tree already killed and reaped
  std::vector<int> segments;
  std::vector<std::string> files, cgroups;
  std::vector<std::string> locks;  // nftables tables (net/net_lock.h)
  bool done = false;
  pid_t root = 0;  // "done" said: the tree of `root` was being released
  SentinelRecord rec;
  while (ReadSentinelRecord(channel, &rec)) {
    const std::string& payload = rec.payload;
    const char kind = rec.kind;
    if (kind == 'D') root = std::atoi(payload.c_str());
    if (kind == 'R') done = true;
    if (kind == 'S') segments.push_back(std::atoi(payload.c_str()));
    if (kind == 'F') files.push_back(payload);
    if (kind == 'C') cgroups.push_back(payload);
    if (kind == 'N') locks.push_back(payload);
    if (kind == 'X') orderly = true;
    if (kind == 'T')
      for (std::string_view w : SplitWords(payload)) tasks.push_back(static_cast<pid_t>(std::atoi(std::string(w).c_str())));
  }
  if (done || (root > 0 && ReleasedAlive(root, cryo))) return;
  if (!orderly) AwaitTreeGone(cryo_pidfd.get(), std::move(tasks));
  int removed = 0;
  for (int id : segments) {
    struct shmid_ds ds;
    // Still cryo's: made by it (another segment with the id has another creator).
    if (::shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_cpid == cryo && ::shmctl(id, IPC_RMID, nullptr) == 0) ++removed;
  }
  for (const std::string& f : files)
    if (::unlink(f.c_str()) == 0) ++removed;
  // Deepest first. The tree's killed processes leave their cgroup a moment
  // after they die: a busy one is retried for a bounded time.
  const double deadline = Now() + 5;
  for (auto it = cgroups.rbegin(); it != cgroups.rend(); ++it) {
    int r;
    while ((r = ::rmdir(it->c_str())) != 0 && errno == EBUSY && Now() < deadline) ::usleep(5000);
    if (r == 0) ++removed;
  }
  for (const std::string& name : locks)
    if (RemoveNftTable(name)) ++removed;
  if (removed)
    dprintf(2, "cryo: the restore (pid %d) did not complete: removed %d SysV segment(s), file(s) and cgroup(s) it had "
            "created\n", cryo, removed);
}

}  // namespace

Result<std::unique_ptr<Janitor>> Janitor::Start(const std::set<pid_t>& avoid) {
  CRYO_ASSIGN_OR_RETURN(auto sentinel, Sentinel::Start("cryo-janitor", avoid, Run));
  return std::unique_ptr<Janitor>(new Janitor(std::move(sentinel)));
}

Status Janitor::WillCreateSysv(int id) { return sentinel_->Send('S', std::to_string(id)); }

Status Janitor::WillCreateFile(const std::string& path) { return sentinel_->Send('F', path); }

Status Janitor::WillCreateCgroup(const std::string& path) { return sentinel_->Send('C', path); }

Status Janitor::WillRemoveNetLock(const std::string& name) { return sentinel_->Send('N', name); }

Status Janitor::WillMakeTasks(const std::vector<pid_t>& tasks) {
  // A record holds at most 8 KiB: 900 ids of up to 7 digits and a space each.
  for (size_t at = 0; at < tasks.size(); at += 900) {
    std::string payload;
    for (size_t i = at; i < std::min(tasks.size(), at + 900); ++i) payload += std::to_string(tasks[i]) + " ";
    CRYO_RETURN_IF_ERROR(sentinel_->Send('T', payload));
  }
  return Status::Ok();
}

void Janitor::Done(pid_t root) { (void)sentinel_->Send('D', std::to_string(root)); }

void Janitor::Released() {
  (void)sentinel_->Send('R', "");
  sentinel_->Hangup();
}

Janitor::~Janitor() {
  if (g_current == this) g_current = nullptr;
  // cryo is here: the restore's tree guard, gone before this object, has
  // killed and reaped the tree; the janitor need not wait for it.
  (void)sentinel_->Send('X', "");
  // The sentinel hangs up (not done: it removes what it was told about) and
  // is awaited, so that nothing is left when cryo returns.
}

Janitor* CurrentJanitor() { return g_current; }
void SetCurrentJanitor(Janitor* j) { g_current = j; }

std::string OwnTempName(const std::string& prefix, const std::string& tag) {
  static const std::string me = std::to_string(::getpid()) + "-" + StartTime(::getpid());
  return prefix + "-" + me + "-" + tag;
}

bool IsStaleTempName(const std::string& prefix, const std::string& name) {
  if (name.compare(0, prefix.size() + 1, prefix + "-") != 0) return false;
  std::vector<std::string> parts;
  size_t at = prefix.size() + 1;
  for (int i = 0; i < 2; ++i) {
    const size_t dash = name.find('-', at);
    if (dash == std::string::npos) return false;
    parts.push_back(name.substr(at, dash - at));
    at = dash + 1;
  }
  if (parts[0].empty() || parts[1].empty() || parts[0].find_first_not_of("0123456789") != std::string::npos ||
      parts[1].find_first_not_of("0123456789") != std::string::npos)
    return false;
  return StartTime(static_cast<pid_t>(std::stol(parts[0]))) != parts[1];
}

}  // namespace cryo
