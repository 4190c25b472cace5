#include "audit/audit.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "audit/classify.h"
#include "audit/sharing.h"
#include "base/file_util.h"
#include "base/unique_fd.h"
#include "ns/ns_thread.h"

namespace cryo::audit {

namespace {

std::string ProcDir(pid_t pid) { return "/proc/" + std::to_string(pid) + "/"; }
std::string TaskDir(pid_t pid, pid_t tid) { return ProcDir(pid) + "task/" + std::to_string(tid) + "/"; }

// A /proc file that may be absent on this kernel or for this process (no
// LSM, no KSM, not a config option): "" with *present false.
Result<std::string> ReadIfPresent(const std::string& path, bool* present) {
  auto text = ReadFileToString(path);
  *present = text.ok();
  if (text.ok()) return text;
  const int err = text.status().err();
  if (err == ENOENT || err == EINVAL || err == EOPNOTSUPP || err == ENODEV) return std::string();
  return text.status();
}

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return Status::FromErrno("opendir " + path);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

Result<std::map<std::string, std::string>> NsLinks(const std::string& dir) {
  std::map<std::string, std::string> links;
  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir + "ns"));
  for (const std::string& n : names) {
    CRYO_ASSIGN_OR_RETURN(links[n], ReadLink(dir + "ns/" + n));
  }
  return links;
}

LeaderValues StatusValues(std::string_view text) {
  LeaderValues v;
  for (const auto& [k, val] : KeyValueLines(text)) v.emplace(std::string(k), std::string(val));
  return v;
}

// The stop a task was seized in: PTRACE_INTERRUPT's (SIGTRAP), or a
// group-stop's, which PTRACE_SEIZE reports with the stopping signal
// (do_jobctl_trap): a task stopped by job control.
void ClassifySeizeStop(pid_t tid, const std::string& subject, Report* report) {
  siginfo_t si;
  std::memset(&si, 0, sizeof(si));
  if (::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) != 0) {
    report->Add(subject, "seize", "stop", "", Verdict::kRefused,
                std::string("cannot be asked how it stopped (PTRACE_GETSIGINFO: ") + std::strerror(errno) + ")");
    return;
  }
  if (si.si_signo == SIGTRAP) return report->Tally(subject, "seize", "stop", Verdict::kNotState);
  // A job-control stop comes back stopped (tree/job_control.cc).
  if (si.si_signo == SIGSTOP || si.si_signo == SIGTSTP || si.si_signo == SIGTTIN || si.si_signo == SIGTTOU)
    return report->Tally(subject, "seize", "job-control stop", Verdict::kRestored);
  const char* name = sigabbrev_np(si.si_signo);
  report->Add(subject, "seize", "stop", std::to_string(si.si_signo), Verdict::kRefused,
              std::string("is stopped by SIG") + (name ? name : "?") +
                  ", a stop cryo does not know; continue it first (kill -CONT)");
}

// The owner and signal of signal-driven I/O belong to the open file
// description: a duplicate (pidfd_getfd) shows them. The dump read them on
// its own duplicate already (proc::FdInfo::owner_*): those values, without
// taking the fd again.
Status ClassifyOwnerOf(int pidfd, int fd, const proc::FdInfo& info, const std::string& subject, Report* report) {
  if (info.owner_read) {
    ClassifyFdOwner({info.owner_type, info.owner_pid, info.owner_sig}, subject, report);
    return Status::Ok();
  }
  UniqueFd dup(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
  if (!dup.valid()) return Status::FromErrno("pidfd_getfd of " + subject);
  struct f_owner_ex owner = {};
  // An O_PATH description takes no owner: fcntl refuses every command on it
  // but F_DUPFD*, F_GETFD, F_SETFD and F_GETFL (check_fcntl_cmd, fs/fcntl.c).
  const int flags = ::fcntl(dup.get(), F_GETFL);
  if (flags >= 0 && (flags & O_PATH)) {
    ClassifyFdOwner({owner.type, 0, 0}, subject, report);
    return Status::Ok();
  }
  if (::fcntl(dup.get(), F_GETOWN_EX, &owner) != 0) return Status::FromErrno("F_GETOWN_EX on " + subject);
  const int sig = ::fcntl(dup.get(), F_GETSIG);
  if (sig < 0) return Status::FromErrno("F_GETSIG on " + subject);
  ClassifyFdOwner({owner.type, owner.pid, sig}, subject, report);
  return Status::Ok();
}

Status AuditFds(const ProcessShown& p, Report* report, std::set<std::string>* lock_ids) {
  if (!p.fds || !p.fd_infos) return Status::Ok();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  if (!pidfd.valid()) return Status::FromErrno("pidfd_open pid " + std::to_string(p.pid));
  for (int i = 0; i < p.fds->fds_size() && i < static_cast<int>(p.fd_infos->size()); ++i) {
    const image::Fd& f = p.fds->fds(i);
    const proc::FdInfo& info = (*p.fd_infos)[static_cast<size_t>(i)];
    const std::string subject = "pid " + std::to_string(p.pid) + " fd " + std::to_string(f.fd());
    ClassifyFdInfo(f.kind(), info, subject, report);
    auto [begin, end] = info.fields.equal_range("lock");
    for (auto it = begin; it != end; ++it) lock_ids->insert(LockIdentity(it->second));
    CRYO_RETURN_IF_ERROR(ClassifyOwnerOf(pidfd.get(), f.fd(), info, subject, report));
  }
  return Status::Ok();
}

// What a process has in small /proc files, namespaces and cgroups; for a
// thread (leader_* set) compared with its leader's.
struct Shared {
  std::map<std::string, std::string> ns;
  std::string cgroup;
  std::string loginuid;
};

Result<Shared> AuditPlacement(const std::string& dir, const std::string& subject, const Baseline& cryo,
                              const Shared* leader, Report* report) {
  Shared s;
  CRYO_ASSIGN_OR_RETURN(s.ns, NsLinks(dir));
  ClassifyNamespaces(s.ns, subject, cryo, leader ? &leader->ns : nullptr, report);
  bool present = false;
  CRYO_ASSIGN_OR_RETURN(s.cgroup, ReadIfPresent(dir + "cgroup", &present));
  if (present) ClassifyCgroups(s.cgroup, subject, cryo, leader ? &leader->cgroup : nullptr, report);
  CRYO_ASSIGN_OR_RETURN(s.loginuid, ReadIfPresent(dir + "loginuid", &present));
  if (!present) return s;
  if (!leader) {
    ClassifySmallFile("loginuid", s.loginuid, subject, cryo, report);
  } else if (leader->loginuid == s.loginuid) {
    report->Tally(subject, "/proc/PID", "loginuid", Verdict::kRestored);
  } else {
    report->Add(subject, "/proc/PID", "loginuid", std::string(Trim(s.loginuid)), Verdict::kRefused,
                "has a login uid other than its process leader's, which is not restored yet");
  }
  return s;
}

Status AuditThread(const ProcessShown& p, pid_t tid, const Baseline& cryo, const LeaderValues& status,
                   const LeaderValues& stat, const Shared& placement, Report* report) {
  const std::string dir = TaskDir(p.pid, tid);
  const std::string subject = "pid " + std::to_string(p.pid) + " thread " + std::to_string(tid);
  CRYO_ASSIGN_OR_RETURN(std::string st, ReadFileToString(dir + "status"));
  ClassifyStatus(st, subject, cryo, &status, report);
  CRYO_ASSIGN_OR_RETURN(std::string sf, ReadFileToString(dir + "stat"));
  CRYO_RETURN_IF_ERROR(ClassifyStat(sf, subject, cryo, &stat, report));
  CRYO_RETURN_IF_ERROR(AuditPlacement(dir, subject, cryo, &placement, report).status());
  ClassifyIoPriority(static_cast<int>(::syscall(SYS_ioprio_get, 1 /*IOPRIO_WHO_PROCESS*/, tid)), subject, cryo,
                     report);
  return Status::Ok();
}

}  // namespace

Status AuditProcessFiles(const ProcessShown& p, const Baseline& cryo, bool list_entries, Report* report,
                         std::set<std::string>* lock_ids) {
  const std::string dir = ProcDir(p.pid);
  const std::string subject = "pid " + std::to_string(p.pid);
  if (!p.refusal.empty()) report->Refuse(subject, "describe", p.refusal);
  if (list_entries) {
    CRYO_ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(dir));
    ClassifyProcEntries(entries, subject, report);
  }
  ClassifyStatus(p.status, subject, cryo, nullptr, report);
  CRYO_RETURN_IF_ERROR(ClassifyStat(p.stat, subject, cryo, nullptr, report));
  CRYO_RETURN_IF_ERROR(ClassifySmaps(p.smaps, p.pid, cryo, report));
  bool present = false;
  CRYO_ASSIGN_OR_RETURN(std::string numa, ReadIfPresent(dir + "numa_maps", &present));
  if (present) CRYO_RETURN_IF_ERROR(ClassifyNumaMaps(numa, p.pid, report));
  CRYO_ASSIGN_OR_RETURN(Shared placement, AuditPlacement(dir, subject, cryo, nullptr, report));
  for (std::string_view name : SmallProcFiles()) {
    if (name == "loginuid") continue;  // with the placement, per thread
    CRYO_ASSIGN_OR_RETURN(std::string text, ReadIfPresent(dir + std::string(name), &present));
    if (present) ClassifySmallFile(name, text, subject, cryo, report);
  }
  ClassifyIoPriority(static_cast<int>(::syscall(SYS_ioprio_get, 1 /*IOPRIO_WHO_PROCESS*/, p.pid)), subject, cryo,
                     report);
  CRYO_RETURN_IF_ERROR(AuditFds(p, report, lock_ids));
  const LeaderValues status = StatusValues(p.status);
  LeaderValues stat;
  CRYO_ASSIGN_OR_RETURN(auto fields, StatFields(p.stat));
  for (auto& [k, v] : fields) stat.emplace(std::move(k), std::move(v));
  for (pid_t tid : p.tids)
    if (tid != p.pid) CRYO_RETURN_IF_ERROR(AuditThread(p, tid, cryo, status, stat, placement, report));
  return Status::Ok();
}

void AuditSeizeStops(const ProcessShown& p, Report* report) {
  for (pid_t tid : p.tids)
    ClassifySeizeStop(tid, "pid " + std::to_string(p.pid) + (tid == p.pid ? "" : " thread " + std::to_string(tid)),
                      report);
}

namespace {

// A zombie whose other threads still run: its main thread called
// pthread_exit. The dump records zombies by their exit status only.
Status AuditZombie(pid_t pid, Report* report) {
  auto text = ReadFileToString(ProcDir(pid) + "status");
  if (!text.ok()) return Status::Ok();  // reaped meanwhile
  for (const auto& [k, v] : KeyValueLines(*text))
    if (k == "Threads" && v != "1" && v != "0")
      report->Add("pid " + std::to_string(pid), "status", "Threads", std::string(v), Verdict::kRefused,
                  "has exited its main thread while " + std::string(v) +
                      " threads run on (pthread_exit in main), which is not supported");
  return Status::Ok();
}

}  // namespace

Status AuditTreeWide(const TreeShown& tree, const std::set<std::string>& lock_ids, Report* report) {
  std::set<pid_t> pids;
  std::vector<SharingInput> sharing;
  for (const ProcessShown& p : tree.processes) {
    pids.insert(p.pid);
    sharing.push_back({p.pid, p.tids});
  }
  for (pid_t z : tree.zombies) CRYO_RETURN_IF_ERROR(AuditZombie(z, report));
  CRYO_ASSIGN_OR_RETURN(std::string locks, ReadFileToString("/proc/locks"));
  ClassifyLocks(locks, pids, lock_ids, report);
  // /proc/sysvipc/sem: a header line, then one line per semaphore set; of
  // the tree's IPC namespace, which may be its own (ns/namespaces.h).
  bool present = false;
  std::string sems;
  auto read_sems = [&]() -> Status {
    CRYO_ASSIGN_OR_RETURN(sems, ReadIfPresent("/proc/sysvipc/sem", &present));
    return Status::Ok();
  };
  const pid_t first = tree.processes.empty() ? 0 : tree.processes.front().pid;
  CRYO_ASSIGN_OR_RETURN(uint64_t mine, ns::NsInode(0, "ipc"));
  auto theirs = first ? ns::NsInode(first, "ipc") : Result<uint64_t>(mine);
  if (theirs.ok() && *theirs != mine)
    CRYO_RETURN_IF_ERROR(ns::RunInNamespacesOf(first, CLONE_NEWIPC, read_sems));
  else
    CRYO_RETURN_IF_ERROR(read_sems());
  const bool semaphores = SplitLines(Trim(sems)).size() > 1;
  return ClassifySharing(sharing, tree.root_parent, semaphores, report);
}

Result<Report> AuditTree(const TreeShown& tree, const Baseline& cryo) {
  Report report;
  std::set<std::string> lock_ids;
  for (size_t i = 0; i < tree.processes.size(); ++i) {
    const ProcessShown& p = tree.processes[i];
    AuditSeizeStops(p, &report);
    CRYO_RETURN_IF_ERROR(
        AuditProcessFiles(p, cryo, i == 0, &report, &lock_ids).Prefixed("auditing pid " + std::to_string(p.pid)));
  }
  CRYO_RETURN_IF_ERROR(AuditTreeWide(tree, lock_ids, &report));
  return report;
}

}  // namespace cryo::audit
