#include "restore/resume_hook.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "base/log.h"

namespace cryo {

Status RunBeforeResume(const std::string& cmd, pid_t root, double timeout_s) {
  if (cmd.empty()) return Status::Ok();
  const double t0 = Now();
  // Built before the fork: the child of a process with threads calls only
  // async-signal-safe functions (fork(2)).
  std::string var = "CRYO_RESTORE_PID=" + std::to_string(root);
  std::vector<char*> env;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("CRYO_RESTORE_PID=", 0) != 0) env.push_back(*e);
  env.push_back(var.data());
  env.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork for --before-resume");
  if (child == 0) {
    // The restore blocks signals it reads from a signalfd (SIGCHLD) or
    // ignores: the command starts with none blocked and default actions.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) ::signal(sig, SIG_DFL);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0) ::_exit(126);
    ::execle("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr), env.data());
    ::_exit(127);
  }
  int st = 0;
  for (;;) {
    const pid_t r = ::waitpid(child, &st, WNOHANG);
    if (r == child) break;
    if (r < 0 && errno != EINTR) return Status::FromErrno("waitpid for --before-resume");
    if (Now() - t0 > timeout_s) {
      ::kill(child, SIGKILL);
      while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {
      }
      return Status::Error("--before-resume command did not finish in " + std::to_string(static_cast<int>(timeout_s)) +
                           " s (killed): " + cmd);
    }
    ::usleep(1000);
  }
  LOG_INFO("--before-resume command ran in %.1f ms", (Now() - t0) * 1e3);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return Status::Ok();
  const std::string how = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                        : "signal " + std::to_string(WTERMSIG(st));
  return Status::Error("--before-resume command failed (" + how + "), the tree is not resumed: " + cmd);
}

}  // namespace cryo
