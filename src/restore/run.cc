#include "restore/run.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/file_util.h"
#include "base/signal_forward.h"
#include "base/unique_fd.h"
#include "ns/tree_pidns.h"
#include "restore/pidns.h"

namespace cryo {

namespace {

// The CLONE_NEW* flags of the program's own namespaces (beyond pid and mnt).
Result<int> ParseNamespaces(const std::string& list) {
  int flags = 0;
  bool pid = false, mnt = false;
  for (size_t start = 0; start <= list.size();) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string kind = list.substr(start, comma - start);
    start = comma + 1;
    if (kind == "pid") pid = true;
    else if (kind == "mnt") mnt = true;
    else if (kind == "net") flags |= CLONE_NEWNET;
    else if (kind == "ipc") flags |= CLONE_NEWIPC;
    else if (kind == "uts") flags |= CLONE_NEWUTS;
    else return Status::Error("--ns: unknown namespace kind \"" + kind + "\" (the kinds are pid, mnt, net, ipc, uts)");
  }
  if (!pid || !mnt)
    return Status::Error("--ns must name pid and mnt: the program runs in a PID namespace of its own (so that "
                         "restores give it its pids again) with that namespace's /proc");
  return flags;
}

// A new network namespace's loopback is down (network_namespaces(7)).
Status LoopbackUp() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return Status::FromErrno("socket");
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCSIFFLAGS lo up");
  return Status::Ok();
}

[[noreturn]] void Report(int fd, const Status& s) {
  const std::string text = s.ToString();
  (void)WriteAll(fd, text.data(), text.size());
  ::_exit(127);
}

[[noreturn]] void RunProgram(const RunOptions& opts, int flags, int report_fd) {
  if (::setsid() < 0) Report(report_fd, Status::FromErrno("setsid"));
  if (flags && ::unshare(flags) != 0) Report(report_fd, Status::FromErrno("unshare of the program's namespaces"));
  if ((flags & CLONE_NEWNET)) {
    if (Status s = LoopbackUp(); !s.ok()) Report(report_fd, s.Prefixed("the program's network namespace"));
  }
  std::vector<char*> argv;
  for (const std::string& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execvp(argv[0], argv.data());
  Report(report_fd, Status::FromErrno("exec " + opts.argv[0]));
}

// Pid 1 of the new namespace: its mount namespace and /proc, the program, then the init.
[[noreturn]] void RunInit(const RunOptions& opts, int flags, int report_fd) {
  ::setsid();
  if (Status s = ns::MountOwnProc(); !s.ok()) Report(report_fd, s);
  const pid_t program = ::fork();
  if (program < 0) Report(report_fd, Status::FromErrno("fork of the program"));
  if (program == 0) RunProgram(opts, flags, report_fd);
  ForwardSignalsTo(program);
  RunNamespaceInit(program, -1);  // closes report_fd
}

}  // namespace

Result<RunStarted> RunInFreshNamespaces(const RunOptions& opts) {
  if (opts.argv.empty()) return Status::Error("no program to run (cryo run -- CMD ARGS)");
  CRYO_ASSIGN_OR_RETURN(const int flags, ParseNamespaces(opts.namespaces));
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd report_r(report[0]), report_w(report[1]);
  // The next child of cryo is pid 1 of a new PID namespace (unshare(2)).
  if (::unshare(CLONE_NEWPID) != 0) return Status::FromErrno("unshare(CLONE_NEWPID)");
  const pid_t init = ::fork();
  if (init < 0) return Status::FromErrno("fork of the new PID namespace's init");
  if (init == 0) {
    report_r.reset();
    RunInit(opts, flags, report_w.get());
  }
  report_w.reset();
  // EOF once the program was exec'd and the init closed its copy.
  std::string reply = ReadToEof(report_r.get());
  if (!reply.empty()) {
    // The init ends with its program (or has failed itself).
    ::kill(init, SIGKILL);
    while (::waitpid(init, nullptr, 0) < 0 && errno == EINTR) {
    }
    return Status::Error(reply);
  }
  const std::string children_path = "/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children";
  CRYO_ASSIGN_OR_RETURN(std::string children, ReadFileToString(children_path));
  const std::vector<std::string_view> ids = SplitWords(children);
  if (ids.empty()) {
    // Exec'd and already gone: the init has exited with its status.
    int st = 0;
    while (::waitpid(init, &st, 0) < 0 && errno == EINTR) {
    }
    return Status::Error("the program " + opts.argv[0] + " ended at once (wait status of its init " +
                         std::to_string(st) + ")");
  }
  RunStarted out;
  out.init = init;
  out.pid = static_cast<pid_t>(std::stol(std::string(ids.front())));
  return out;
}

}  // namespace cryo
