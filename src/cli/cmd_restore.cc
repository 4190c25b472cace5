// cryo restore: bring a process tree back from an image directory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "base/clock.h"
#include "base/log.h"
#include "base/signal_forward.h"
#include "cgroup/cgroup_restore.h"
#include "cli/command.h"
#include "cli/messages.h"
#include "cli/preflight.h"
#include "mem/lazy_server.h"
#include "ns/join_ns.h"
#include "restore/pidns.h"
#include "restore/restore.h"

namespace cryo::cli {

namespace {

// Without --detach cryo stays the restored process's parent: it forwards
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 (ForwardSignalsTo) and
// leaves with the process's exit status (or dies by the same signal). With
// --pidns new its child is the namespace's init, which forwards them to the
// root and, on `root_status_fd`, tells how the root ended: cryo ends the same way.
// With --lazy (`lazy`), a tree killed because a page could not be served
// makes cryo fail (the server named the page).
int WaitAsParent(pid_t pid, int root_status_fd = -1, LazyServer* lazy = nullptr) {
  ForwardSignalsTo(pid);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return Fail(Status::FromErrno("waitpid " + std::to_string(pid)));
  }
  if (lazy && !lazy->Wait().ok()) return 1;
  int root_status = 0;
  if (root_status_fd >= 0 && ::read(root_status_fd, &root_status, sizeof(root_status)) == sizeof(root_status))
    status = root_status;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    LOG_INFO("restored pid %d was killed by signal %d", pid, sig);
    signal(sig, SIG_DFL);
    ::kill(getpid(), sig);
    return 128 + sig;
  }
  return 1;
}

class RestoreCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    auto* cmd = app.add_subcommand("restore", "restore a process from an image directory");
    cmd->add_option("dir", dir_, "the image to restore (or -D DIR)")->type_name("DIR");
    cmd->add_option("-D,--images-dir", restore_.images_dir, "the image to restore (or DIR)")->type_name("DIR");
    cmd->add_flag("-d,--detach", restore_.detach, "return once the process runs (default: stay its parent and exit with its status)");
    cmd->add_option("--pidfile", restore_.pidfile, "write the restored root pid to FILE")->type_name("FILE");
    cmd->add_option("--pidns", pidns_,
                    "new: restore into a new PID namespace (and mount namespace with its own /proc), with the "
                    "image's pids inside it, beside the original or other copies; the pidfile gets the host pid")
        ->check(CLI::IsMember({"new"}))
        ->type_name("new");
    cmd->add_option("--join-ns", restore_.join_ns,
                    "make the tree inside this existing namespace (KIND net, ipc, uts or mnt; PATH as "
                    "/proc/PID/ns/net or a bind-mounted namespace file); repeatable")
        ->allow_extra_args(false)
        ->check(CLI::Validator(
            [](std::string& value) {
              Status s = ns::ParseJoinNs(value);
              return s.ok() ? std::string() : s.message();
            },
            "", "namespace to join"))
        ->type_name("KIND:PATH");
    cmd->add_option("--veth-peer-ns", restore_.veth_peer_ns,
                    "make the outside ends of the tree's veth pairs in this network namespace (default: where "
                    "they were, /run/netns/NAME or cryo's own)")
        ->type_name("PATH");
    cmd->add_flag("--lazy", restore_.lazy,
                  "resume the tree at once: its private anonymous pages come from the image on first touch "
                  "(userfaultfd) and from a background prefetch; cryo stays until every page is in (a page "
                  "that cannot be read kills the tree)");
    cmd->add_flag("--tcp-close", restore_.tcp_close,
                  "restore TCP connections reset by their peer (the program's next recv/send fails with "
                  "ECONNRESET) instead of established");
    cmd->add_flag("--shell-job", restore_.shell_job, "restore a --shell-job image onto cryo's own terminal, in cryo's session");
    cmd->add_flag("--ignore-changed-files", restore_.ignore_changed_files,
                  "restore even if files the tree refers to changed since the dump (each is named in a warning)");
    cmd->add_flag("--no-restore-files", restore_.no_restore_files,
                  "do not put back the files the image carries (--snapshot-path): they are checked for changes "
                  "like every other file");
    cmd->add_option("--allow-changed", restore_.allow_changed,
                    "restore even if this file changed since the dump (repeatable)")
        ->allow_extra_args(false)
        ->type_name("PATH");
    cmd->add_option("--cgroup-root", restore_.cgroup_roots,
                    "place the tree's cgroups below PATH instead of below cryo's own cgroup; "
                    "HIERARCHY:PATH for one hierarchy (v1 controllers as in /proc/PID/cgroup, or cgroup2); repeatable")
        ->check(CLI::Validator(
            [](std::string& value) {
              auto roots = cgroup::ParseCgroupRoots({value});
              return roots.ok() ? std::string() : roots.status().message();
            },
            "", "cgroup root"))
        ->type_name("[HIERARCHY:]PATH");
    return cmd;
  }

  std::optional<int> EarlyUsageError() override {
    if (dir_.empty() && restore_.images_dir.empty())
      return UsageError("restore: the image directory is missing: cryo restore DIR (or -D DIR)");
    if (!dir_.empty() && !restore_.images_dir.empty() && dir_ != restore_.images_dir)
      return UsageError("restore: two image directories given (" + dir_ + " and -D " + restore_.images_dir + ")");
    if (restore_.images_dir.empty()) restore_.images_dir = dir_;
    restore_.new_pidns = pidns_ == "new";
    return std::nullopt;
  }

  int Run() override {
    return restore_.new_pidns ? RunInNewPidns() : RunHere();
  }

 private:
  int RunInNewPidns() {
    const std::optional<image::Inventory> inv = ReadInventory(restore_.images_dir);
    const double t0 = Now();
    Result<PidnsRestored> r = RestoreInNewPidns(restore_);
    ReportFaultPoints();
    if (!r.ok()) {
      LOG_ERROR("restore from %s failed: %s", restore_.images_dir.c_str(), r.status().ToString().c_str());
      return 1;
    }
    // Attached, the signals the tree gets through cryo are forwarded from the
    // moment the pidfile names it.
    if (!restore_.detach) ForwardSignalsTo(r->init);
    if (!restore_.pidfile.empty()) {
      std::ofstream pf(restore_.pidfile, std::ios::trunc);
      pf << r->root_host << "\n";
      if (!pf) {
        // The restore fails: its namespace goes with its init.
        ::kill(r->init, SIGKILL);
        ::waitpid(r->init, nullptr, 0);
        return Fail(Status::Error("cannot write pidfile " + restore_.pidfile + "; the restored tree was killed"));
      }
    }
    Say(RestoredLine(inv ? inv->pids_size() : 1, r->root, Now() - t0) + "; in a new PID namespace: host pid " +
        std::to_string(r->root_host) + ", its init host pid " + std::to_string(r->init));
    // --lazy: the namespace's init serves the pages; cryo reports how it went.
    if (restore_.detach && r->lazy_fd < 0) return 0;
    if (restore_.detach) {
      std::string report;
      if (Status l = ReadLazyOutcome(r->lazy_fd, &report); !l.ok()) return Fail(l);
      Say(report);
      return 0;
    }
    const int rc = WaitAsParent(r->init, r->exit_fd);
    if (r->lazy_fd >= 0)
      if (Status l = ReadLazyOutcome(r->lazy_fd, nullptr); !l.ok()) return Fail(l);
    return rc;
  }

  int RunHere() {
    // After a kill-mode dump the original's pids are free only once its
    // parent reaps it: say what the restore waits for, and how long at most.
    const std::optional<image::Inventory> inv = ReadInventory(restore_.images_dir);
    if (inv) {
      const std::string held = WaitForExitingPids({inv->pids().begin(), inv->pids().end()}, kPidWaitSeconds, Say);
      if (!held.empty()) LOG_WARN("%s", held.c_str());
    }
    const double t0 = Now();
    std::unique_ptr<LazyServer> lazy;
    Result<pid_t> pid = Restore(restore_, &lazy);
    ReportFaultPoints();
    if (!pid.ok()) {
      LOG_ERROR("restore from %s failed: %s", restore_.images_dir.c_str(), pid.status().ToString().c_str());
      return 1;
    }
    Say(RestoredLine(inv ? inv->pids_size() : 1, *pid, Now() - t0));
    // --lazy --detach: cryo stays until every page is in (the server logs
    // the report, or names the page that failed and kills the tree).
    if (restore_.detach) {
      if (!lazy) return 0;
      if (!lazy->Wait().ok()) return 1;
      Say(lazy->Report());
      return 0;
    }
    return WaitAsParent(*pid, -1, lazy.get());
  }

  RestoreOptions restore_;
  std::string dir_;    // the positional DIR (or -D DIR)
  std::string pidns_;  // --pidns new
};

}  // namespace

std::unique_ptr<Command> NewRestoreCommand() { return std::make_unique<RestoreCommand>(); }

}  // namespace cryo::cli
