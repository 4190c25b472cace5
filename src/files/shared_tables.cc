#include "files/shared_tables.h"

#include <linux/futex.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <new>
#include <string>

#include "base/clock.h"
#include "files/fd_kind.h"
#include "proc/proc.h"

namespace cryo {

namespace {

struct Shared {
  int kcmp_type;
  const char* what;  // what the processes share
  const char* flag;  // the clone(2) flag that makes it shared
};
constexpr Shared kFiles = {KCMP_FILES, "fd table", "CLONE_FILES"};
constexpr Shared kFs = {KCMP_FS, "cwd, root and umask (fs_struct)", "CLONE_FS"};

long Kcmp(pid_t a, pid_t b, int type) { return syscall(SYS_kcmp, a, b, type, 0, 0); }

Status CheckThreads(const std::vector<TreeProcess>& procs, const Shared& k) {
  for (const TreeProcess& p : procs)
    for (pid_t tid : p.tids) {
      if (tid == p.pid) continue;
      const long r = Kcmp(p.pid, tid, k.kcmp_type);
      if (r < 0) return Status::FromErrno("kcmp of thread " + std::to_string(tid) + " with pid " + std::to_string(p.pid));
      if (r != 0)
        return Status::Error("thread " + std::to_string(tid) + " of pid " + std::to_string(p.pid) + " has a " +
                             k.what + " of its own (unshare(2) " + k.flag +
                             "); cryo restores one per process: not restored");
    }
  return Status::Ok();
}

// The processes grouped by the kernel object they use, in kcmp's order of
// those objects (kcmp(2) orders them consistently).
using Classes = std::vector<std::vector<pid_t>>;

// Where `pid` belongs in `classes`: its index and whether it is there already.
Result<std::pair<size_t, bool>> Locate(const Classes& classes, pid_t pid, int type) {
  size_t lo = 0, hi = classes.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const long r = Kcmp(pid, classes[mid][0], type);
    if (r < 0) return Status::FromErrno("kcmp of pid " + std::to_string(pid) + " with pid " + std::to_string(classes[mid][0]));
    if (r == 0) return std::make_pair(mid, true);
    if (r == 1)
      hi = mid;
    else
      lo = mid + 1;
  }
  return std::make_pair(lo, false);
}

// Refuses a process of the tree that shares with one outside it.
Status CheckOutside(const Classes& classes, const std::set<pid_t>& tree, const Shared& k) {
  return proc::ForEachPidOutside(tree, [&](pid_t pid) {
    auto at = Locate(classes, pid, k.kcmp_type);
    if (!at.ok() || !at->second) return Status::Ok();  // gone, or nothing shared
    return Status::Error("pid " + std::to_string(classes[at->first][0]) + " shares its " + k.what + " with " +
                         NamePid(pid) + ", outside the tree (" + k.flag + "): not restored (dump that process's "
                         "tree instead)");
  });
}

Status FindShared(const std::vector<TreeProcess>& procs, const Shared& k, std::set<pid_t>* with_parent) {
  CRYO_RETURN_IF_ERROR(CheckThreads(procs, k));
  Classes classes;
  std::set<pid_t> tree;
  std::map<pid_t, pid_t> parent;
  for (const TreeProcess& p : procs) {
    tree.insert(p.pid);
    parent[p.pid] = p.ppid;
    CRYO_ASSIGN_OR_RETURN(auto at, Locate(classes, p.pid, k.kcmp_type));
    if (at.second)
      classes[at.first].push_back(p.pid);
    else
      classes.insert(classes.begin() + static_cast<long>(at.first), std::vector<pid_t>{p.pid});
  }
  for (const std::vector<pid_t>& c : classes) {
    if (c.size() < 2) continue;
    const std::set<pid_t> members(c.begin(), c.end());
    std::vector<pid_t> tops;
    for (pid_t m : c)
      if (members.count(parent[m]))
        with_parent->insert(m);
      else
        tops.push_back(m);
    if (tops.size() != 1) {
      std::string names;
      for (pid_t m : c) names += (names.empty() ? "" : ", ") + std::to_string(m);
      return Status::Error("pids " + names + " share one " + k.what + " (" + k.flag +
                           "), but not each with its parent: cryo rebuilds such sharing along parents only; "
                           "not restored");
    }
  }
  return CheckOutside(classes, tree, k);
}

bool SharesAny(const image::ProcessCore& c) { return c.shares_files_with_parent() || c.shares_fs_with_parent(); }

// For every live process: the topmost process reached from it through
// parents it shares with (`shares` says whether a process shares with its
// parent). Memoized: parents are looked up once.
template <typename Shares>
std::map<pid_t, pid_t> Leaders(const std::map<pid_t, const image::ProcessCore*>& cores, Shares shares) {
  std::map<pid_t, pid_t> leader;
  for (const auto& [pid, core] : cores) {
    std::vector<pid_t> path;
    pid_t p = pid;
    for (;;) {
      auto known = leader.find(p);
      if (known != leader.end()) {
        p = known->second;
        break;
      }
      const image::ProcessCore* c = cores.at(p);
      path.push_back(p);
      if (!shares(*c) || !cores.count(c->ppid()) || path.size() > cores.size()) break;
      p = c->ppid();
    }
    for (pid_t q : path) leader[q] = p;
  }
  return leader;
}

}  // namespace

Result<TableSharing> FindSharedTables(const std::vector<TreeProcess>& procs) {
  TableSharing out;
  CRYO_RETURN_IF_ERROR(FindShared(procs, kFiles, &out.files_with_parent));
  CRYO_RETURN_IF_ERROR(FindShared(procs, kFs, &out.fs_with_parent));
  return out;
}

Status CheckSharingPlan(const RestorePlan& plan, const std::map<pid_t, const image::ProcessCore*>& cores) {
  for (const auto& [pid, core] : cores) {
    if (!SharesAny(*core)) continue;
    const std::string what = "pid " + std::to_string(pid) + " shares its " +
                             (core->shares_files_with_parent() ? kFiles.what : kFs.what) + " with its parent " +
                             std::to_string(core->ppid());
    auto parent = cores.find(core->ppid());
    if (core->zombie() || parent == cores.end() || parent->second->zombie())
      return Status::Error(what + ", which is not a live process of the image (corrupted)");
    auto t = plan.tasks.find(pid);
    if (t == plan.tasks.end() || t->second.creator != core->ppid())
      return Status::Error(what + ", but the restore must clone it from " +
                           (t == plan.tasks.end() ? std::string("nobody")
                                                  : "the temporary leader " + std::to_string(t->second.creator)) +
                           " to rebuild its session: not restored");
  }
  return Status::Ok();
}

uint64_t SharingCloneFlags(const image::ProcessCore& core) {
  return (core.shares_files_with_parent() ? CLONE_FILES : 0) | (core.shares_fs_with_parent() ? CLONE_FS : 0);
}

std::map<pid_t, SharingRole> SharingRoles(const std::map<pid_t, const image::ProcessCore*>& cores) {
  const auto top = Leaders(cores, SharesAny);
  const auto files = Leaders(cores, [](const image::ProcessCore& c) { return c.shares_files_with_parent(); });
  const auto fs = Leaders(cores, [](const image::ProcessCore& c) { return c.shares_fs_with_parent(); });
  std::map<pid_t, std::vector<pid_t>> groups, files_users, fs_users;  // by leader, ascending
  for (const auto& [pid, core] : cores) {
    if (core->zombie()) continue;
    groups[top.at(pid)].push_back(pid);
    files_users[files.at(pid)].push_back(pid);
    fs_users[fs.at(pid)].push_back(pid);
  }
  std::map<pid_t, SharingRole> roles;
  for (const auto& [pid, core] : cores) {
    if (core->zombie()) continue;
    SharingRole& r = roles[pid];
    r.top = top.at(pid);
    r.files_leader = files.at(pid);
    r.fs_leader = fs.at(pid);
    r.files_users = files_users.at(r.files_leader);
    r.fs_users = fs_users.at(r.fs_leader);
    const std::vector<pid_t>& g = groups.at(r.top);
    if (g.size() < 2) continue;
    r.group = g;
    r.index = static_cast<int>(std::find(g.begin(), g.end(), pid) - g.begin());
  }
  return roles;
}

Result<GroupBoard> GroupBoard::Create(size_t slots) {
  const size_t len = (slots * sizeof(Slot) + 4095) & ~size_t{4095};
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Status::FromErrno("mapping the board of processes sharing an fd table or fs_struct");
  GroupBoard b;
  b.slots_ = static_cast<Slot*>(m);
  b.n_ = slots;
  for (size_t i = 0; i < slots; ++i) {
    Slot* s = new (&b.slots_[i]) Slot();
    s->status_fd = s->exe_fd = -1;
  }
  return b;
}

void GroupBoard::Post(int slot, Step step) {
  Slot& s = slots_[slot];
  s.steps.fetch_or(step, std::memory_order_release);
  // Not FUTEX_PRIVATE_FLAG: the waiters are other processes.
  syscall(SYS_futex, &s.steps, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

Status GroupBoard::Wait(int slot, Step step) const {
  Slot& s = slots_[slot];
  const double deadline = Now() + 120;
  for (;;) {
    const uint32_t v = s.steps.load(std::memory_order_acquire);
    if (v & step) return Status::Ok();
    if (Now() > deadline) return Status::Errno(ETIMEDOUT, "waiting for the process of slot " + std::to_string(slot) +
                                                              " of the group sharing an fd table or fs_struct");
    struct timespec ts = {0, 100 * 1000 * 1000};
    syscall(SYS_futex, &s.steps, FUTEX_WAIT, v, &ts, nullptr, 0);
  }
}

void GroupBoard::SetFds(int slot, int status_fd, int exe_fd) {
  slots_[slot].status_fd = status_fd;
  slots_[slot].exe_fd = exe_fd;
}

void GroupBoard::Fds(int slot, int* status_fd, int* exe_fd) const {
  *status_fd = slots_[slot].status_fd;
  *exe_fd = slots_[slot].exe_fd;
}

}  // namespace cryo
