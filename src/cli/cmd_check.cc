// cryo check: can this kernel checkpoint (probes)? With -t PID: can that
// tree be checkpointed (what would be refused)?
#include <cstdio>

#include "check/features.h"
#include "check/probes.h"
#include "cli/command.h"
#include "dump/dump.h"

namespace cryo::cli {

namespace {

class CheckCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    cmd_ = app.add_subcommand("check", "probe the kernel features cryo relies on; with -t PID, whether that tree can be checkpointed");
    cmd_->add_flag("--json", json_, "machine-readable output");
    cmd_->add_flag("--refresh", refresh_, "probe again instead of using the cached result");
    cmd_->add_option("-t,--pid", pid_, "classify everything the tree of PID holds (restored or refused), without dumping it")
        ->check(PidValue())
        ->type_name("PID");
    cmd_->add_flag("--all", all_, "with -t: list every item, not a summary");
    cmd_->add_flag("--shell-job", shell_job_, "with -t: as dump --shell-job");
    cmd_->add_flag("--udp-queue-unverified", udp_unverified_, "with -t: as dump --udp-queue-unverified");
    return cmd_;
  }

  int Run() override { return cmd_->count("--pid") ? CheckOneTree() : CheckKernel(); }

 private:
  int CheckOneTree() {
    const pid_t host_pid = pid_;
    if (std::optional<int> rc = EnterTreePidns(&pid_)) return *rc;
    if (pid_ != host_pid)
      std::printf("pid %d lives in a PID namespace of its own, where it is pid %d: checked from inside it\n", host_pid,
                  pid_);
    Status s = CheckTree(pid_, shell_job_, all_, udp_unverified_);
    return s.ok() ? 0 : Fail(s);
  }

  int CheckKernel() {
    Result<check::Report> report = check::LoadOrRunProbes(check::DefaultCachePath(), refresh_);
    if (!report.ok()) return Fail(report.status());
    std::string out = json_ ? check::FormatJson(*report) : check::FormatText(*report);
    fwrite(out.data(), 1, out.size(), stdout);
    if (!report->can_checkpoint) {
      if (!json_) fprintf(stderr, "cryo: %s\n", report->why.c_str());
      return 1;
    }
    return 0;
  }

  CLI::App* cmd_ = nullptr;
  bool json_ = false, refresh_ = false, all_ = false, shell_job_ = false, udp_unverified_ = false;
  pid_t pid_ = 0;
};

}  // namespace

std::unique_ptr<Command> NewCheckCommand() { return std::make_unique<CheckCommand>(); }

}  // namespace cryo::cli
