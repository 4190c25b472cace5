// cryo: checkpoint/restore for Linux processes.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/log.h"
#include "check/features.h"
#include "check/probes.h"
#include "dump/dump.h"
#include "image/image_dir.h"
#include "image/show.h"
#include "restore/restore.h"

namespace cryo {
namespace {

int Fail(const Status& s) {
  LOG_ERROR("%s", s.ToString().c_str());
  return 1;
}

volatile sig_atomic_t g_child = 0;

void ForwardSignal(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

// Without --detach cryo stays the restored process's parent: it forwards
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 and leaves with the process's exit status (or dies by the
// same signal).
int WaitAsParent(pid_t pid) {
  g_child = pid;
  struct sigaction sa = {};
  sa.sa_handler = ForwardSignal;
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return Fail(Status::FromErrno("waitpid " + std::to_string(pid)));
  }
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

}  // namespace
}  // namespace cryo

int main(int argc, char** argv) {
  using namespace cryo;
  CLI::App app{"cryo: checkpoint and restore Linux processes.\n\n"
               "  cryo check                     can this kernel checkpoint?\n"
               "  cryo check -t PID              can this tree be checkpointed? (what would be refused)\n"
               "  cryo dump -t PID -D DIR        checkpoint a process into DIR (then kill it)\n"
               "  cryo restore -D DIR            bring it back, with its PID, memory and files\n"
               "  cryo show DIR                  what an image holds\n",
               "cryo"};
  app.set_version_flag("-V,--version", std::string("cryo ") + CRYO_VERSION + " (image format " +
                                           std::to_string(image::kFormatVersion) + ")");
  app.require_subcommand(1);
  std::string log_file;
  int verbosity = 0;
  app.add_option("--log-file,-o", log_file, "append a detailed log to FILE");
  app.add_flag("-v,--verbose", verbosity, "more messages on stderr (-vv for debug)");

  DumpOptions dump;
  auto* dump_cmd = app.add_subcommand("dump", "checkpoint a process into an image directory");
  dump_cmd->add_option("-t,--pid", dump.pid, "the process to checkpoint")->required();
  dump_cmd->add_option("-D,--images-dir", dump.images_dir, "where to write the image (created 0700)")->required();
  dump_cmd->add_flag("-R,--leave-running", dump.leave_running, "let the process run on after the dump (default: kill it once the image is synced)");
  dump_cmd->add_flag("--shell-job", dump.shell_job, "the process runs in the caller's shell: its terminal is not part of the image");
  bool progress = false;
  dump_cmd->add_flag("--progress", progress, "show progress while writing memory");

  RestoreOptions restore;
  auto* restore_cmd = app.add_subcommand("restore", "restore a process from an image directory");
  restore_cmd->add_option("-D,--images-dir", restore.images_dir, "the image to restore")->required();
  restore_cmd->add_flag("-d,--detach", restore.detach, "return once the process runs (default: stay its parent and exit with its status)");
  restore_cmd->add_option("--pidfile", restore.pidfile, "write the restored root pid to FILE");
  restore_cmd->add_flag("--shell-job", restore.shell_job, "restore a --shell-job image onto cryo's own terminal, in cryo's session");
  restore_cmd->add_option("--cgroup-root", restore.cgroup_roots,
                          "place the tree's cgroups below PATH instead of below cryo's own cgroup; "
                          "HIERARCHY:PATH for one hierarchy (v1 controllers as in /proc/PID/cgroup, or cgroup2); repeatable");

  std::string show_dir;
  bool show_json = false;
  auto* show_cmd = app.add_subcommand("show", "print what an image holds");
  show_cmd->add_option("dir", show_dir, "image directory")->required();
  show_cmd->add_flag("--json", show_json, "machine-readable output");

  bool check_json = false, check_refresh = false, check_all = false, check_shell_job = false;
  pid_t check_pid = 0;
  auto* check_cmd = app.add_subcommand("check", "probe the kernel features cryo relies on; with -t PID, whether that tree can be checkpointed");
  check_cmd->add_flag("--json", check_json, "machine-readable output");
  check_cmd->add_flag("--refresh", check_refresh, "probe again instead of using the cached result");
  check_cmd->add_option("-t,--pid", check_pid, "classify everything the tree of PID holds (restored or refused), without dumping it");
  check_cmd->add_flag("--all", check_all, "with -t: list every item, not a summary");
  check_cmd->add_flag("--shell-job", check_shell_job, "with -t: as dump --shell-job");

  for (auto* sub : {dump_cmd, restore_cmd, show_cmd, check_cmd}) {
    sub->add_option("--log-file,-o", log_file, "append a detailed log to FILE");
    sub->add_flag("-v,--verbose", verbosity, "more messages on stderr (-vv for debug)");
  }

  CLI11_PARSE(app, argc, argv);
  SetStderrLogLevel(verbosity >= 2 ? LogLevel::kDebug : verbosity == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  if (Status s = check::CheckPretendedNames(); !s.ok()) return Fail(s);
  if (!log_file.empty()) {
    Status s = OpenLogFile(log_file);
    if (!s.ok()) return Fail(s);
  }

  if (*dump_cmd) {
    dump.show_progress = progress;
    Status s = Dump(dump);
    if (!s.ok()) {
      LOG_ERROR("dump of pid %d failed: %s", dump.pid, s.ToString().c_str());
      if (dump.pid != ::getpid() && dump.pid != ::getppid() && ::kill(dump.pid, 0) == 0)
        LOG_ERROR("pid %d was left running, untouched", dump.pid);
      return 1;
    }
    return 0;
  }
  if (*restore_cmd) {
    Result<pid_t> pid = Restore(restore);
    if (!pid.ok()) {
      LOG_ERROR("restore from %s failed: %s", restore.images_dir.c_str(), pid.status().ToString().c_str());
      return 1;
    }
    if (restore.detach) return 0;
    return WaitAsParent(*pid);
  }
  if (*show_cmd) {
    Result<image::LoadedImage> img = image::LoadImage(show_dir);
    if (!img.ok()) return Fail(img.status());
    std::string out = show_json ? image::ShowJson(*img) : image::ShowText(*img);
    fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  if (*check_cmd && check_pid != 0) {
    Status s = CheckTree(check_pid, check_shell_job, check_all);
    return s.ok() ? 0 : Fail(s);
  }
  if (*check_cmd) {
    Result<check::Report> report = check::LoadOrRunProbes(check::DefaultCachePath(), check_refresh);
    if (!report.ok()) return Fail(report.status());
    std::string out = check_json ? check::FormatJson(*report) : check::FormatText(*report);
    fwrite(out.data(), 1, out.size(), stdout);
    if (!report->can_checkpoint) {
      if (!check_json) fprintf(stderr, "cryo: %s\n", report->why.c_str());
      return 1;
    }
    return 0;
  }
  return 0;
}
