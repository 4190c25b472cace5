// cryo page-server: receive one image streamed by `cryo dump --to` (or
// `cryo migrate`, --restore) into a directory.
#include <unistd.h>

#include <cstdio>

#include "base/clock.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/messages.h"
#include "cli/preflight.h"
#include "image/image_dir.h"
#include "net/tcp_migrate.h"
#include "restore/restore.h"
#include "stream/page_server.h"

namespace cryo::cli {

namespace {

// `cryo page-server --restore`: the received image, restored detached (the
// root outlives the page server) once the original's pids are free (on one
// machine: once the source tree's parent reaped it).
Result<pid_t> RestoreReceived(const std::string& dir, const std::string& pidfile, const std::string& before_resume) {
  RestoreOptions opts;
  opts.images_dir = dir;
  opts.detach = true;
  opts.pidfile = pidfile;
  // The source keeps its network lock until we say RESTORED (net/tcp_migrate.h).
  opts.lock_held_by_source = true;
  opts.before_resume = before_resume;
  if (const std::optional<image::Inventory> inv = ReadInventory(dir)) {
    const std::string held = WaitForExitingPids({inv->pids().begin(), inv->pids().end()}, kPidWaitSeconds, Say);
    if (!held.empty()) LOG_WARN("%s", held.c_str());
  }
  return Restore(opts);
}

class PageServerCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    auto* cmd = app.add_subcommand("page-server", "receive one image streamed by `cryo dump --to` into a directory");
    cmd->add_option("--listen", server_.listen, "the address to listen on (port 0: any free port, printed)")
        ->required()
        ->type_name("ADDR:PORT");
    cmd->add_option("-D,--images-dir", server_.images_dir, "where the image goes (must not exist, or be empty)")
        ->required()
        ->type_name("DIR");
    cmd->add_flag("--insecure", insecure_, "receive without encryption or authentication (a trusted link only)");
    AddTlsOptions(cmd, &server_.tls);
    cmd->add_option("--timeout", server_.timeout_s, "give up after SECS of silence from the sender (default 60)")
        ->check(CLI::PositiveNumber)
        ->type_name("SECS");
    cmd->add_option("--wait", server_.wait_s, "wait at most SECS for the sender to connect (default 3600)")
        ->check(CLI::PositiveNumber)
        ->type_name("SECS");
    cmd->add_flag("--restore", restore_,
                  "receive a tree from `cryo migrate` and restore it here once the source has killed it "
                  "(the image stays in DIR)");
    cmd->add_option("--pidfile", pidfile_, "with --restore: write the restored root pid to FILE")->type_name("FILE");
    cmd->add_option("--before-resume", before_resume_,
                    "with --restore: run CMD (sh -c) once the tree is made, before it resumes (e.g. move the "
                    "address its TCP connections use to this host); its failure fails the restore")
        ->type_name("CMD");
    return cmd;
  }

  bool CatchesInterrupts() const override { return true; }

  int Run() override {
    if (!pidfile_.empty() && !restore_) return UsageError("page-server: --pidfile goes with --restore");
    if (!before_resume_.empty() && !restore_) return UsageError("page-server: --before-resume goes with --restore");
    if (std::optional<int> rc = StreamUsageError("page-server", server_.tls, insecure_)) return *rc;
    if (restore_) {
      server_.restore = [this](const std::string& dir) { return RestoreReceived(dir, pidfile_, before_resume_); };
      // Refused while the source still holds its tree (net/tcp_migrate.h).
      server_.check = [this](const std::string& dir) -> Status {
        if (!before_resume_.empty()) return Status::Ok();
        CRYO_ASSIGN_OR_RETURN(image::LoadedImage img, image::LoadImage(dir));
        return CheckMigratedAddresses(img, false);
      };
    }
    server_.on_listening = [](const std::string& addr) {
      fprintf(stderr, "cryo: page-server listening on %s\n", addr.c_str());
      fflush(stderr);
    };
    stream::ReceivedImage got;
    const double t0 = Now();
    Status s = stream::RunPageServer(server_, &got);
    ReportFaultPoints();
    if (!s.ok()) {
      LOG_ERROR("page-server: %s", s.ToString().c_str());
      if (::access(server_.images_dir.c_str(), F_OK) != 0)
        LOG_ERROR("page-server: nothing was kept (no %s)", server_.images_dir.c_str());
      return kFailed;
    }
    Say(ReceivedLine(got.peer + (server_.tls.enabled() ? " over TLS" : " (insecure)"), server_.images_dir, got.files,
                     got.bytes, Now() - t0) +
        (got.restored ? "; restored, root pid " + std::to_string(got.restored) : ""));
    return 0;
  }

 private:
  stream::PageServerOptions server_;
  bool insecure_ = false;
  bool restore_ = false;
  std::string pidfile_;
  std::string before_resume_;
};

}  // namespace

std::unique_ptr<Command> NewPageServerCommand() { return std::make_unique<PageServerCommand>(); }

}  // namespace cryo::cli
