#include "ns/tree_pidns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "base/signal_forward.h"
#include "base/unique_fd.h"
#include "ns/ns_thread.h"
#include "ns/tree_mntns.h"
#include "proc/proc.h"

namespace cryo::ns {

namespace {

bool g_in_tree_pidns = false;
int g_complete_w = -1;  // in the dumper: its end of the pipe to cryo
int g_complete_r = -1;  // in cryo: the other end
uint64_t g_cryo_mnt_ns = 0;  // the mount namespace cryo was started in

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }

// Each mount of a mountinfo file as "FSTYPE SOURCE on MOUNT_POINT (OPTIONS;
// SUPER_OPTIONS), root ROOT", sorted: ids and propagation tags differ between
// copies of a namespace, so they are left out (proc(5): ID PARENT MAJ:MIN
// ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS).
Result<std::vector<std::string>> MountKeys(const std::string& mountinfo) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(mountinfo));
  std::vector<std::string> keys;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    const std::vector<std::string_view> w = SplitWords(line);
    size_t dash = 6;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (dash + 3 >= w.size()) return Status::Error(mountinfo + ": malformed line \"" + std::string(line) + "\"");
    keys.push_back(std::string(w[dash + 1]) + " " + proc::UnescapeMountField(w[dash + 2]) + " on " +
                   proc::UnescapeMountField(w[4]) + " (" + std::string(w[5]) + "; " + std::string(w[dash + 3]) +
                   "), root " + proc::UnescapeMountField(w[3]));
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

// The tree's mount table is the dumper's (cryo's with the namespace's /proc),
// which the restore with --pidns new makes again.
Status CheckMountTable(pid_t first) {
  CRYO_ASSIGN_OR_RETURN(uint64_t theirs, NsInode(first, "mnt"));
  if (theirs == g_cryo_mnt_ns)
    return Status::Error(Pid(first) + " lives in its own PID namespace but in cryo's mount namespace, whose /proc "
                         "shows cryo's pids; a restore into a new PID namespace would give it its own /proc (start it "
                         "with `cryo run`, or `unshare --pid --fork --mount-proc`)");
  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> tree, MountKeys("/proc/" + std::to_string(first) + "/mountinfo"));
  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> mine, MountKeys("/proc/self/mountinfo"));
  std::vector<std::string> extra, missing;
  std::set_difference(tree.begin(), tree.end(), mine.begin(), mine.end(), std::back_inserter(extra));
  std::set_difference(mine.begin(), mine.end(), tree.begin(), tree.end(), std::back_inserter(missing));
  const std::string why = "; a restore rebuilds the tree's mount namespace only as a copy of cryo's mounts with the "
                          "PID namespace's own /proc (other mount tables are not restored yet)";
  if (!extra.empty())
    return Status::Error("the mount namespace of " + Pid(first) + " holds a mount cryo's has not: " + extra.front() +
                         why);
  if (!missing.empty())
    return Status::Error("the mount namespace of " + Pid(first) + " lacks a mount of cryo's: " + missing.front() +
                         why);
  return Status::Ok();
}

}  // namespace

Result<pid_t> PidInChildPidns(pid_t host_pid) {
  Result<std::string> read = ReadFileToString("/proc/" + std::to_string(host_pid) + "/status");
  if (!read.ok()) return 0;  // no such process: the dump says so itself
  const std::string& status = *read;
  const size_t at = status.find("\nNSpid:");
  if (at == std::string::npos) return Status::Error(Pid(host_pid) + ": no NSpid line in /proc/PID/status");
  const size_t end = status.find('\n', at + 1);
  const std::vector<std::string_view> ids = SplitWords(std::string_view(status).substr(at + 7, end - at - 7));
  if (ids.size() <= 1) return 0;
  if (ids.size() > 2)
    return Status::Error(Pid(host_pid) + " lives in a PID namespace nested " + std::to_string(ids.size() - 1) +
                         " levels below cryo's; only a tree in a PID namespace one level below is restored (run cryo "
                         "from the namespace's parent)");
  const pid_t inner = static_cast<pid_t>(std::stol(std::string(ids.back())));
  if (inner == 1)
    return Status::Error(Pid(host_pid) + " is pid 1 of its PID namespace: a restore into a new PID namespace gives "
                         "pid 1 to cryo's init, so the namespace's init cannot be part of the image (start the "
                         "program with `cryo run`, whose init is not part of the tree, or dump a child of this one)");
  return inner;
}

Status MountOwnProc() {
  if (::unshare(CLONE_NEWNS) != 0) return Status::FromErrno("unshare(CLONE_NEWNS)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    return Status::FromErrno("making / a slave mount in the new mount namespace");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return Status::FromErrno("mounting /proc of the PID namespace");
  return Status::Ok();
}

Result<pid_t> ForkInPidnsOf(pid_t host_pid) {
  CRYO_ASSIGN_OR_RETURN(const uint64_t cryo_mnt, NsInode(0, "mnt"));
  const std::string path = "/proc/" + std::to_string(host_pid) + "/ns/pid";
  UniqueFd pidns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (pidns.get() < 0) return Status::FromErrno("open " + path);
  int complete[2];
  if (::pipe2(complete, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  // cryo's next child is created in the tree's PID namespace (setns(2)).
  if (::setns(pidns.get(), CLONE_NEWPID) != 0) return Status::FromErrno("setns " + path);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork into the PID namespace of pid " + std::to_string(host_pid));
  if (child > 0) {
    ::close(complete[1]);
    g_complete_r = complete[0];
    return child;
  }
  ::close(complete[0]);
  g_complete_w = complete[1];
  // Killing cryo (even with SIGKILL) stops the dump as it would without the
  // namespace: the tree is then let go by the kernel (tracer gone).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (Status s = MountOwnProc(); !s.ok()) {
    fprintf(stderr, "cryo: dumping inside the PID namespace of pid %d: %s\n", host_pid, s.ToString().c_str());
    ::_exit(1);
  }
  g_in_tree_pidns = true;
  g_cryo_mnt_ns = cryo_mnt;
  return 0;
}

bool DumpingInTreePidns() { return g_in_tree_pidns; }

uint64_t CryoMountNs() { return g_cryo_mnt_ns; }

void ReportImageComplete() {
  if (g_complete_w >= 0) (void)WriteAll(g_complete_w, "C", 1);
}

int WaitForDumper(pid_t dumper, pid_t host_root) {
  ForwardSignalsTo(dumper);
  int status = 0;
  while (::waitpid(dumper, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "cryo: waitpid %d: %s\n", dumper, strerror(errno));
      return 1;
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  char c = 0;
  const bool complete = ::read(g_complete_r, &c, 1) == 1 && c == 'C';
  if (complete && WTERMSIG(status) == SIGKILL) {
    // Killed with the namespace once its init ended: the tree must be gone
    // too (its processes are killed with it; waited for at most 10 s).
    for (int i = 0; i < 1000; ++i) {
      auto stat = ReadFileToString("/proc/" + std::to_string(host_root) + "/stat");
      const size_t paren = stat.ok() ? stat->rfind(')') : std::string::npos;
      if (!stat.ok() || (paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z')) {
        LOG_INFO("the dumper (pid %d) ended with the tree's PID namespace once the image was complete", dumper);
        return 0;
      }
      ::usleep(10000);
    }
    fprintf(stderr, "cryo: the dumper was killed after the image was complete, and pid %d still runs\n", host_root);
    return 1;
  }
  const int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  ::kill(::getpid(), sig);
  return 128 + sig;
}

bool IsCryoInit() {
  if (!g_in_tree_pidns) return false;
  auto init = ReadLink("/proc/1/exe");
  auto me = ReadLink("/proc/self/exe");
  return init.ok() && me.ok() && *init == *me;
}

Status CheckTreePidns(pid_t first, const std::set<pid_t>& tree, std::set<std::string>* features) {
  if (!g_in_tree_pidns) return Status::Ok();
  if (tree.count(1))
    return Status::Error("pid 1 of the PID namespace is in the tree: a restore into a new PID namespace gives pid 1 "
                         "to cryo's init");
  // A mount namespace of the tree's own was compared with the dumper's and
  // entered already (ns/tree_mntns.h).
  if (!DumpingInTreeMountNs()) CRYO_RETURN_IF_ERROR(CheckMountTable(first));
  CRYO_RETURN_IF_ERROR(proc::ForEachPidOutside(tree, [&](pid_t p) {
    if (p == 1) return Status::Ok();
    auto comm = ReadFileToString("/proc/" + std::to_string(p) + "/comm");
    if (!comm.ok()) return Status::Ok();  // gone
    return Status::Error(Pid(p) + " (" + std::string(Trim(*comm)) + ") lives in the tree's PID namespace outside "
                         "the tree (an orphan reparented to the namespace's init?): a restore into a new PID "
                         "namespace would not make it (dump the tree that holds every process of the namespace "
                         "but its pid 1)");
  }));
  features->insert("pid-ns");
  return Status::Ok();
}

}  // namespace cryo::ns
