#include "restore/pidns_userns.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "base/signal_forward.h"
#include "ns/user_ns.h"
#include "restore/pidns.h"

namespace cryo {

namespace {

constexpr char kInitPid = 'P';  // then pid_t: the init's host pid
constexpr char kFailed = 'E';   // then the error text, up to EOF
constexpr char kForwarding = 'A';

// Closes every fd above stdio but `keep`.
void CloseAllBut(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned from = 3;
  for (int fd : keep) {
    if (fd < 3) continue;
    if (static_cast<unsigned>(fd) > from) ::close_range(from, static_cast<unsigned>(fd) - 1, 0);
    from = static_cast<unsigned>(fd) + 1;
  }
  ::close_range(from, ~0U, 0);
}

// Pid 1, until it knows its root: holds nothing of cryo's but its four fds
// (cryo's report pipe held here would keep cryo waiting for the engine).
[[noreturn]] void AwaitRoot(int alive_fd, int go_fd, int ack_fd, int exit_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  CloseLogFile();
  CloseAllBut({alive_fd, go_fd, ack_fd, exit_fd});
  // cryo is the only writer left: a cryo gone before the prctl shows here.
  struct pollfd p = {alive_fd, POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) ::_exit(1);
  ::close(alive_fd);
  // A session of its own, as the init of any --pidns new restore.
  ::setsid();
  pid_t ids[2] = {};  // the root inside, and in cryo's namespace
  size_t got = 0;
  while (got < sizeof(ids)) {
    const ssize_t n = ::read(go_fd, reinterpret_cast<char*>(ids) + got, sizeof(ids) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(1);  // cryo gave up: the namespace goes with this init
    got += static_cast<size_t>(n);
  }
  const pid_t root = ids[0];
  // Into the tree's mount namespace (owned by the tree's user namespace,
  // so this pid 1 may join it), as any --pidns new init lives in it; this
  // /proc is still cryo's, where the root has its host pid.
  const std::string mnt = "/proc/" + std::to_string(ids[1]) + "/ns/mnt";
  const int mnt_fd = ::open(mnt.c_str(), O_RDONLY | O_CLOEXEC);
  if (mnt_fd < 0 || ::setns(mnt_fd, CLONE_NEWNS) != 0) ::_exit(1);
  ::close(mnt_fd);
  ::prctl(PR_SET_PDEATHSIG, 0);
  ForwardSignalsTo(root);
  if (!WriteAll(ack_fd, &kForwarding, 1)) ::_exit(1);
  ::close(ack_fd);
  ::close(go_fd);
  RunNamespaceInit(root, exit_fd);
}

[[noreturn]] void MakerFail(int fd, const std::string& why) {
  const std::string text = kFailed + why + ": " + std::strerror(errno);
  (void)WriteAll(fd, text.data(), text.size());
  ::_exit(1);
}

}  // namespace

Result<UserNsInit> ForkInitInTreeUserNs(int alive_fd, int alive_w, int exit_fd) {
  int go[2], ack[2], rep[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd go_r(go[0]), go_w(go[1]);
  if (::pipe2(ack, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd ack_r(ack[0]), ack_w(ack[1]);
  if (::pipe2(rep, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd rep_r(rep[0]), rep_w(rep[1]);
  const int userns = *ns::TreeUserNsFd();
  if (userns < 0) return Status::Error("no user namespace of the tree's own was made before its PID namespace");
  const pid_t maker = ::fork();
  if (maker < 0) return Status::FromErrno("fork (a child to make the PID namespace in the tree's user namespace)");
  if (maker == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(alive_w);
    go_w.reset();
    ack_r.reset();
    rep_r.reset();
    // Single-threaded with an fs_struct of its own, as setns(CLONE_NEWUSER)
    // requires (setns(2)); the PID namespace it unshares is then owned by
    // the tree's user namespace.
    if (::setns(userns, CLONE_NEWUSER) != 0) MakerFail(rep_w.get(), "setns into the tree's user namespace");
    if (::unshare(CLONE_NEWPID) != 0) MakerFail(rep_w.get(), "unshare(CLONE_NEWPID) in the tree's user namespace");
    // CLONE_PARENT: pid 1 is cryo's child, not this short-lived one's.
    struct clone_args args;
    std::memset(&args, 0, sizeof(args));
    args.flags = CLONE_PARENT;
    const long r = ::syscall(SYS_clone3, &args, sizeof(args));
    if (r < 0) MakerFail(rep_w.get(), "clone3 of the PID namespace's pid 1");
    if (r == 0) AwaitRoot(alive_fd, go_r.get(), ack_w.get(), exit_fd);
    char msg[1 + sizeof(pid_t)];
    msg[0] = kInitPid;
    const pid_t init = static_cast<pid_t>(r);
    std::memcpy(msg + 1, &init, sizeof(init));
    ::_exit(WriteAll(rep_w.get(), msg, sizeof(msg)) ? 0 : 1);
  }
  go_r.reset();
  ack_w.reset();
  rep_w.reset();
  const std::string reply = ReadToEof(rep_r.get());
  int st = 0;
  while (::waitpid(maker, &st, 0) < 0)
    if (errno != EINTR) return Status::FromErrno("waitpid for the child that made the PID namespace");
  UserNsInit out;
  if (reply.size() == 1 + sizeof(pid_t) && reply[0] == kInitPid) {
    std::memcpy(&out.pid, reply.data() + 1, sizeof(pid_t));
  } else if (!reply.empty() && reply[0] == kFailed) {
    return Status::Error("making the PID namespace in the tree's user namespace: " + reply.substr(1));
  } else {
    return Status::Error("the child that made the PID namespace in the tree's user namespace died (wait status " +
                         std::to_string(st) + ")");
  }
  out.go = std::move(go_w);
  out.ack = std::move(ack_r);
  LOG_DEBUG("pid 1 of the fresh PID namespace owned by the tree's user namespace: host pid %d", out.pid);
  return out;
}

Status JoinPidnsOfInit(pid_t init) {
  const std::string path = "/proc/" + std::to_string(init) + "/ns/pid";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  if (::setns(fd.get(), CLONE_NEWPID) != 0) return Status::FromErrno("setns " + path + " (for the restore engine)");
  return Status::Ok();
}

pid_t EnginePid(const image::Inventory& inv) {
  pid_t max = 32768;
  if (auto text = ReadFileToString("/proc/sys/kernel/pid_max"); text.ok()) {
    const std::string t(Trim(*text));
    if (!t.empty() && t.size() < 9 && t.find_first_not_of("0123456789") == std::string::npos) max = std::stoi(t);
  }
  pid_t pid = max - 1;
  while (pid > 2 && std::count(inv.pids().begin(), inv.pids().end(), pid)) --pid;
  return pid;
}

Status HandRootToInit(UserNsInit& init, pid_t root, pid_t root_host) {
  const pid_t ids[2] = {root, root_host};
  if (!WriteAll(init.go.get(), ids, sizeof(ids))) return Status::FromErrno("telling the init its root");
  init.go.reset();
  char c = 0;
  ssize_t n;
  do {
    n = ::read(init.ack.get(), &c, 1);
  } while (n < 0 && errno == EINTR);
  init.ack.reset();
  if (n != 1 || c != kForwarding)
    return Status::Error("the init of the new PID namespace (pid " + std::to_string(init.pid) +
                         ") ended before taking the restored root");
  return Status::Ok();
}

Status CheckHandOverFit(const image::ProcessCore& root) {
  if (root.pdeath_sig() != 0)
    return Status::Error("pid " + std::to_string(root.pid()) + " (the root) has parent-death signal " +
                         std::to_string(root.pdeath_sig()) + ", which the restore into a PID namespace owned by its "
                         "user namespace would fire when it hands the root from its engine to the namespace's init "
                         "(not supported)");
  return Status::Ok();
}

}  // namespace cryo
