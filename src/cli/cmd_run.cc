// cryo run: start a program in fresh namespaces suited to checkpointing.
#include <cstdio>
#include <fstream>

#include "base/log.h"
#include "base/privileges.h"
#include "cli/command.h"
#include "restore/run.h"

namespace cryo::cli {

namespace {

class RunCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    auto* cmd = app.add_subcommand("run", "start a program in fresh namespaces suited to checkpointing (a PID "
                                          "namespace of its own, whose init is cryo's), detached; prints its pid");
    cmd->add_option("--ns", run_.namespaces,
                    "its namespaces, from pid, mnt, net, ipc, uts (pid and mnt required; default pid,mnt)")
        ->type_name("KINDS");
    cmd->add_option("--pidfile", pidfile_, "write the program's pid to FILE")->type_name("FILE");
    cmd->add_option("command", run_.argv, "the program and its arguments (after --)")->required()->type_name("CMD");
    return cmd;
  }

  int Run() override {
    if (Status priv = CheckPrivileges(); !priv.ok()) return Fail(priv);
    Result<RunStarted> r = RunInFreshNamespaces(run_);
    if (!r.ok()) return Fail(r.status().Prefixed("run"));
    if (!pidfile_.empty()) {
      std::ofstream pf(pidfile_, std::ios::trunc);
      pf << r->pid << "\n";
      if (!pf) return Fail(Status::Error("cannot write pidfile " + pidfile_ + " (pid " + std::to_string(r->pid) + " runs)"));
    }
    printf("%d\n", r->pid);
    LOG_INFO("pid %d runs in namespaces of its own, its init host pid %d", r->pid, r->init);
    return 0;
  }

 private:
  RunOptions run_;
  std::string pidfile_;
};

}  // namespace

std::unique_ptr<Command> NewRunCommand() { return std::make_unique<RunCommand>(); }

}  // namespace cryo::cli
