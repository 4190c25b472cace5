#include "base/janitor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>

#include "base/clock.h"
#include "base/file_util.h"

namespace cryo {

namespace {

Janitor* g_current = nullptr;

// Field 22 of /proc/PID/stat: when the process started (clock ticks since boot).
std::string StartTime(pid_t pid) {
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return "";
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return "";
  std::vector<std::string_view> w = SplitWords(std::string_view(*stat).substr(paren + 2));
  return w.size() > 19 ? std::string(w[19]) : "";
}

bool ReadAll(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
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
    auto stat = ReadFileToString(dir + "stat");
    if (!text.ok() || !stat.ok()) return false;  // gone: killed with cryo
    std::string state, tracer;
    bool dying = false;
    for (std::string_view line : SplitLines(*text)) {
      if (line.substr(0, 6) == "State:") state = std::string(Trim(line.substr(6)));
      if (line.substr(0, 10) == "TracerPid:") tracer = std::string(Trim(line.substr(10)));
      if (line.substr(0, 7) == "SigPnd:" || line.substr(0, 7) == "ShdPnd:")
        dying |= (std::strtoull(std::string(Trim(line.substr(7))).c_str(), nullptr, 16) >> (SIGKILL - 1)) & 1;
    }
    // Field 9 of stat, the task's flags: PF_EXITING (0x4).
    const size_t paren = stat->rfind(')');
    const std::vector<std::string_view> w =
        SplitWords(std::string_view(*stat).substr(paren == std::string::npos ? 0 : paren + 2));
    dying |= w.size() > 6 && (std::strtoull(std::string(w[6]).c_str(), nullptr, 10) & 0x4);
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

// `nft delete table inet NAME` (a network lock of the restore), bounded.
bool RemoveNftTable(const std::string& name) {
  const pid_t child = ::fork();
  if (child == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::execl("/usr/sbin/nft", "nft", "delete", "table", "inet", name.c_str(), static_cast<char*>(nullptr));
    ::execlp("nft", "nft", "delete", "table", "inet", name.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (child < 0) return false;
  for (int i = 0; i < 2000; ++i) {  // 20 s
    int st = 0;
    const pid_t r = ::waitpid(child, &st, WNOHANG);
    if (r == child) return WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (r < 0 && errno != EINTR) return false;
    ::usleep(10000);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return false;
}

// The janitor process: collects what cryo creates until its pipe closes.
[[noreturn]] void Run(int fd, int alive_fd, pid_t cryo) {
  ::setsid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) ::signal(sig, SIG_IGN);
  ::prctl(PR_SET_NAME, "cryo-janitor", 0, 0, 0);
  // Nothing of cryo's but the pipe and stderr: an end of a restore pipe held
  // here would keep a helper waiting.
  const unsigned lo = static_cast<unsigned>(std::min(fd, alive_fd)), hi = static_cast<unsigned>(std::max(fd, alive_fd));
  if (lo > 3) ::close_range(3, lo - 1, 0);
  if (hi > lo + 1) ::close_range(lo + 1, hi - 1, 0);
  ::close_range(hi + 1, ~0U, 0);
  std::vector<int> segments;
  std::vector<std::string> files, cgroups;
  std::vector<std::string> locks;  // nftables tables (net/net_lock.h)
  bool done = false;
  pid_t root = 0;  // "done" said: the tree of `root` was being released
  for (;;) {
    char kind;
    uint32_t len;
    if (!ReadAll(fd, &kind, 1) || !ReadAll(fd, &len, 4) || len > 8192) break;
    std::string payload(len, '\0');
    if (len && !ReadAll(fd, &payload[0], len)) break;
    if (kind == 'D') root = std::atoi(payload.c_str());
    if (kind == 'R') done = true;
    if (kind == 'S') segments.push_back(std::atoi(payload.c_str()));
    if (kind == 'F') files.push_back(payload);
    if (kind == 'C') cgroups.push_back(payload);
    if (kind == 'N') locks.push_back(payload);
  }
  if (done || (root > 0 && ReleasedAlive(root, cryo))) ::_exit(0);
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
  ::_exit(0);
}

}  // namespace

Result<std::unique_ptr<Janitor>> Janitor::Start(const std::set<pid_t>& avoid) {
  const pid_t cryo = ::getpid();
  int cmd[2], status[2];
  if (::pipe2(cmd, O_CLOEXEC) != 0) return Status::FromErrno("pipe for the restore janitor");
  if (::pipe2(status, O_CLOEXEC) != 0) {
    ::close(cmd[0]);
    ::close(cmd[1]);
    return Status::FromErrno("pipe for the restore janitor");
  }
  // Not a child of cryo (double fork): nothing that reaps cryo's children
  // waits for it, and it outlives cryo. It holds the write end of `status`
  // until it exits.
  const pid_t first = ::fork();
  if (first == 0) {
    ::close(cmd[1]);
    ::close(status[0]);
    if (::fork() != 0) ::_exit(0);
    // A pid the restore needs is no janitor's: move on to another.
    for (int i = 0; i < 64 && avoid.count(::getpid()); ++i)
      if (::fork() != 0) ::_exit(0);
    if (avoid.count(::getpid())) ::_exit(1);
    const pid_t me = ::getpid();
    if (::write(status[1], &me, sizeof(me)) != sizeof(me)) ::_exit(1);
    Run(cmd[0], status[1], cryo);
  }
  ::close(cmd[0]);
  ::close(status[1]);
  if (first < 0) {
    ::close(cmd[1]);
    ::close(status[0]);
    return Status::FromErrno("fork of the restore janitor");
  }
  int st;
  while (::waitpid(first, &st, 0) < 0 && errno == EINTR) {
  }
  std::unique_ptr<Janitor> j(new Janitor(0, cmd[1], status[0]));
  struct pollfd p = {status[0], POLLIN, 0};
  pid_t pid = 0;
  if (::poll(&p, 1, 5000) != 1 || !ReadAll(status[0], &pid, sizeof(pid)) || pid <= 0)
    return Status::Error("the restore janitor did not start");
  j->pid_ = pid;
  return j;
}

Status Janitor::Send(char kind, const std::string& payload) {
  std::string rec(5 + payload.size(), '\0');
  rec[0] = kind;
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::memcpy(&rec[1], &len, 4);
  std::memcpy(&rec[5], payload.data(), payload.size());
  size_t off = 0;
  while (off < rec.size()) {
    const ssize_t n = ::write(fd_, rec.data() + off, rec.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno("telling the restore janitor (pid " + std::to_string(pid_) + ")");
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Janitor::WillCreateSysv(int id) { return Send('S', std::to_string(id)); }

Status Janitor::WillCreateFile(const std::string& path) { return Send('F', path); }

Status Janitor::WillCreateCgroup(const std::string& path) { return Send('C', path); }

void Janitor::Done(pid_t root) { (void)Send('D', std::to_string(root)); }

void Janitor::Released() { Hangup(true); }
Status Janitor::WillRemoveNetLock(const std::string& name) { return Send('N', name); }


Janitor::~Janitor() {
  if (g_current == this) g_current = nullptr;
  Hangup(false);
  AwaitExit();
}

void Janitor::Hangup(bool released) {
  if (fd_ < 0) return;
  if (released) (void)Send('R', "");
  ::close(fd_);
  fd_ = -1;
}

void Janitor::AwaitExit() {
  if (alive_fd_ < 0) return;
  // Its end of the status pipe closes when it exits: bounded, then it goes on alone.
  const double deadline = Now() + 5;
  char c;
  for (;;) {
    struct pollfd p = {alive_fd_, POLLIN, 0};
    const int left = static_cast<int>((deadline - Now()) * 1000);
    if (left <= 0 || ::poll(&p, 1, left) == 0) break;
    if (::read(alive_fd_, &c, 1) <= 0 && errno != EINTR) break;
  }
  ::close(alive_fd_);
  alive_fd_ = -1;
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
