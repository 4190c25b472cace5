// cryo migrate: stream a process tree to `cryo page-server --restore`, which
// restores it there; killed here once the image is safe there.
#include "cli/command.h"
#include "cli/dump_run.h"

namespace cryo::cli {

namespace {

class MigrateCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    DumpOptions& dump = r_.dump;
    r_.migrate = true;
    cmd_ = app.add_subcommand(
        "migrate", "move a process tree to `cryo page-server --restore` at ADDR:PORT: streamed, restored there, killed "
                   "here once the image is safe there");
    cmd_->add_option("-t,--pid", dump.pid, "the process to migrate")->required()->check(PidValue())->type_name("PID");
    cmd_->add_option("--to", r_.to, "the page server (cryo page-server --restore) at ADDR:PORT")
        ->required()
        ->type_name("ADDR:PORT");
    cmd_->add_flag("--insecure", r_.insecure, "stream without encryption or authentication (a trusted link only)");
    AddTlsOptions(cmd_, &r_.tls);
    cmd_->add_flag("--ext-unix-sk", dump.ext_unix_sk, "as cryo dump --ext-unix-sk");
    cmd_->add_flag("--udp-queue-unverified", dump.udp_queue_unverified, "as cryo dump --udp-queue-unverified");
    cmd_->add_option("--fs-root", dump.fs_root,
                     "as cryo dump --fs-root: DIR's tree goes over the stream with the image and the page server "
                     "puts it back at the same path")
        ->type_name("DIR");
    cmd_->add_option("--compress", r_.compress, kWireCompressHelp)->type_name("zstd[:LEVEL]|none");
    cmd_->add_flag("--pre-copy", r_.pre_copy,
                   "copy the memory in rounds while the tree runs, then freeze it and send only what it wrote "
                   "since (as cryo dump --pre-copy): a short downtime");
    cmd_->add_option("--pre-copy-rounds", r_.pre_copy_opts.max_rounds, "as cryo dump --pre-copy-rounds")
        ->type_name("N");
    cmd_->add_flag("--lazy", r_.post_copy,
                   "post-copy: freeze the tree and send everything but its private memory; the tree runs on "
                   "the page server at once and fetches its pages from here (first touch, then a background "
                   "prefetch), the original stays frozen until every page is there, then is killed. If the link "
                   "or either side dies once the tree ran there, the tree is lost on both sides. On one machine "
                   "the page server needs --pidns new");
    return cmd_;
  }

  bool CatchesInterrupts() const override { return true; }

  int Run() override {
    if (std::optional<int> rc = StreamUsageError("migrate", r_.tls, r_.insecure)) return *rc;
    r_.pre_copy_rounds_given = cmd_->count("--pre-copy-rounds") > 0;
    return RunDump(r_);
  }

 private:
  CLI::App* cmd_ = nullptr;
  DumpRun r_;
};

}  // namespace

std::unique_ptr<Command> NewMigrateCommand() { return std::make_unique<MigrateCommand>(); }

}  // namespace cryo::cli
