// cryo page-server: receive one image streamed by `cryo dump --to` (or
// `cryo migrate`, --restore) into a directory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <cstdio>

#include "base/clock.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/messages.h"
#include "cli/preflight.h"
#include "image/image_dir.h"
#include "net/tcp_migrate.h"
#include "mem/lazy_server.h"
#include "restore/pidns.h"
#include "restore/restore.h"
#include "stream/postcopy.h"
#include "stream/page_server.h"

namespace cryo::cli {

namespace {

// `cryo page-server --restore`: the received image, restored detached (the
// root outlives the page server) once the original's pids are free (on one
// machine: once the source tree's parent reaped it).
// --pidns new: into a new PID namespace; the pidfile and the pid returned
// are the root's host pid.
Result<pid_t> RestoreReceivedInPidns(RestoreOptions opts, RemotePageSource* remote) {
  opts.new_pidns = true;
  opts.remote = remote;
  opts.lazy = remote != nullptr;
  const std::string pidfile = opts.pidfile;
  CRYO_ASSIGN_OR_RETURN(PidnsRestored r, RestoreInNewPidns(opts));
  if (r.exit_fd >= 0) ::close(r.exit_fd);
  if (!pidfile.empty()) {
    std::ofstream pf(pidfile, std::ios::trunc);
    pf << r.root_host << "\n";
    if (!pf) {
      ::kill(r.init, SIGKILL);
      ::waitpid(r.init, nullptr, 0);
      return Status::Error("cannot write pidfile " + pidfile + "; the restored tree was killed");
    }
  }
  if (r.lazy_fd >= 0) {
    std::string report;
    CRYO_RETURN_IF_ERROR(ReadLazyOutcome(r.lazy_fd, &report));
    Say(report);
  }
  return r.root_host;
}

// The options of every restore of a received image.
RestoreOptions ReceivedOptions(const std::string& dir, const std::string& pidfile, const std::string& before_resume) {
  RestoreOptions opts;
  opts.images_dir = dir;
  opts.detach = true;
  opts.pidfile = pidfile;
  // The source keeps its network lock until we say RESTORED (net/tcp_migrate.h).
  opts.lock_held_by_source = true;
  opts.before_resume = before_resume;
  return opts;
}

// `cryo page-server --restore` for `cryo migrate --lazy`: the tree restored
// lazily, its pages from the source (`remote`); returns once every page is
// in and the source was told, or the tree was killed.
Result<pid_t> RestorePostCopy(const std::string& dir, const std::string& pidfile, const std::string& before_resume,
                              bool new_pidns, RemotePageSource* remote) {
  RestoreOptions opts = ReceivedOptions(dir, pidfile, before_resume);
  if (new_pidns) return RestoreReceivedInPidns(opts, remote);
  // (the source's tree keeps its pids until every page is here: on one
  // machine this restore needs --pidns new)
  opts.lazy = true;
  opts.remote = remote;
  std::unique_ptr<LazyServer> lazy;
  CRYO_ASSIGN_OR_RETURN(pid_t pid, Restore(opts, &lazy));
  if (lazy) {
    CRYO_RETURN_IF_ERROR(lazy->Wait());
    Say(lazy->Report());
  }
  CRYO_RETURN_IF_ERROR(remote->AllIn().Prefixed("post-copy: telling the source"));
  return pid;
}

Result<pid_t> RestoreReceived(const std::string& dir, const std::string& pidfile, const std::string& before_resume,
                              bool new_pidns) {
  RestoreOptions opts = ReceivedOptions(dir, pidfile, before_resume);
  if (const std::optional<image::Inventory> inv = ReadInventory(dir)) {
    const std::string held = WaitForExitingPids({inv->pids().begin(), inv->pids().end()}, kPidWaitSeconds, Say);
    if (!held.empty()) LOG_WARN("%s", held.c_str());
  }
  if (new_pidns) return RestoreReceivedInPidns(opts, nullptr);
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
    cmd->add_option("--pidns", pidns_,
                    "with --restore: new: restore into a new PID namespace (as cryo restore --pidns new), "
                    "beside the source tree: needed on one machine with cryo migrate --lazy, whose source "
                    "tree keeps its pids (frozen) until every page is in; the pidfile gets the host pid")
        ->check(CLI::IsMember({"new"}))
        ->type_name("new");
    return cmd;
  }

  bool CatchesInterrupts() const override { return true; }

  int Run() override {
    if (!pidfile_.empty() && !restore_) return UsageError("page-server: --pidfile goes with --restore");
    if (!before_resume_.empty() && !restore_) return UsageError("page-server: --before-resume goes with --restore");
    if (!pidns_.empty() && !restore_) return UsageError("page-server: --pidns goes with --restore");
    if (std::optional<int> rc = StreamUsageError("page-server", server_.tls, insecure_)) return *rc;
    if (restore_) {
      server_.restore = [this](const std::string& dir) {
        return RestoreReceived(dir, pidfile_, before_resume_, !pidns_.empty());
      };
      server_.restore_post_copy = [this](const std::string& dir, RemotePageSource* remote) {
        return RestorePostCopy(dir, pidfile_, before_resume_, !pidns_.empty(), remote);
      };
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
                     got.bytes, Now() - t0, got.synced) +
        (got.restored ? "; restored, root pid " + std::to_string(got.restored) : ""));
    return 0;
  }

 private:
  stream::PageServerOptions server_;
  bool insecure_ = false;
  bool restore_ = false;
  std::string pidfile_;
  std::string before_resume_;
  std::string pidns_;
};

}  // namespace

std::unique_ptr<Command> NewPageServerCommand() { return std::make_unique<PageServerCommand>(); }

}  // namespace cryo::cli
