// cryo dump: checkpoint a process tree into an image directory, or stream it
// to a page server (--to).
#include "cli/command.h"
#include "cli/dump_run.h"
#include "image/page_frames.h"

namespace cryo::cli {

namespace {

class DumpCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    DumpOptions& dump = r_.dump;
    cmd_ = app.add_subcommand("dump", "checkpoint a process into an image directory");
    cmd_->add_option("-t,--pid", dump.pid, "the process to checkpoint")->required()->check(PidValue())->type_name("PID");
    cmd_->add_option("-D,--images-dir", dump.images_dir, "where to write the image (created 0700)")->type_name("DIR");
    cmd_->add_option("--to", r_.to, "stream the image to `cryo page-server` at ADDR:PORT instead of writing it here")
        ->type_name("ADDR:PORT");
    cmd_->add_flag("--insecure", r_.insecure,
                   "with --to: stream without encryption or authentication (a trusted link only)");
    AddTlsOptions(cmd_, &r_.tls);
    cmd_->add_option("--compress", r_.compress,
                     "with -D: the page data of the image in compressed frames: zstd (level 3), zstd:LEVEL (1 to "
                     "19), lz4 or none (default none: an older cryo can restore the image; a compressed one needs "
                     "a cryo that knows the feature 'compressed-pages'); " + std::string(kWireCompressHelp))
        ->type_name("zstd[:LEVEL]|lz4|none");
    cmd_->add_flag("-R,--leave-running", dump.leave_running,
                   "let the process run on after the dump: it resumes once its memory is read, before the image is "
                   "synced (default: kill it once the image is synced)");
    cmd_->add_flag("--no-cow", no_cow_,
                   "with --leave-running: copy the memory while the process is frozen (default: a big process "
                   "resumes once its memory is write-protected and cryo copies the memory while it runs, each page "
                   "before the process writes it)");
    cmd_->add_flag("--no-sync", r_.no_sync,
                   "do not fsync the image: faster, but a crash or power loss before the kernel writes it back "
                   "loses the image and, in kill mode, the process with it");
    cmd_->add_flag("--shell-job", dump.shell_job, "the process runs in the caller's shell: its terminal is not part of the image");
    cmd_->add_flag("--ext-unix-sk", dump.ext_unix_sk,
                   "UNIX sockets connected to a socket outside the tree: a datagram one is connected again to that "
                   "name at restore, a stream one comes back closed by its peer");
    cmd_->add_flag("--ext-tty", dump.ext_tty,
                   "a pseudoterminal whose master is outside the tree and that is the controlling terminal of no "
                   "process of the tree (a client's terminal a server holds: tmux) is opened again by its path at "
                   "restore, while it is still that terminal");
    cmd_->add_flag("--udp-queue-unverified", dump.udp_queue_unverified,
                   "where the kernel's count of a UDP socket's queued datagrams is unavailable (no BPF iterator: "
                   "see cryo check), dump the datagrams cryo can peek at anyway: an empty datagram the program "
                   "already peeked at would be lost");
    cmd_->add_flag("--progress", r_.progress, "show progress while writing memory");
    cmd_->add_flag("-f,--force", r_.force, "replace the image DIR already holds (refused without it)");
    cmd_->add_option("--parent", dump.parent_dir,
                     "incremental dump: store only the pages that changed since DIR, an earlier --leave-running "
                     "dump of the same tree; restoring this image needs DIR (and its own parents) where they were")
        ->type_name("DIR");
    cmd_->add_option("--snapshot-path", dump.snapshot_paths,
                     "carry the content of PATH (a file, a directory tree or a symbolic link, with mode, owner, "
                     "xattrs and times) in the image; the restore puts it back (repeatable)")
        ->allow_extra_args(false)
        ->type_name("PATH");
    cmd_->add_flag("--snapshot-open-files", dump.snapshot_open_files,
                   "carry the content of every regular file the tree holds open in the image (a database and its "
                   "journal); the restore puts them back");
    cmd_->add_option("--fs-root", dump.fs_root,
                     "carry the whole directory tree under DIR (a container's root file system; one file system, "
                     "incremental with --parent) in the image; if DIR is an overlayfs mount, only its upper dir, "
                     "the lower dirs checked at restore; the restore puts it back at the same path")
        ->type_name("DIR");
    cmd_->add_flag("--track-mem", dump.track_mem,
                   "with --leave-running: track the pages the tree writes from now on (userfaultfd write-protect, "
                   "held by a small cryo-memtrack process), so that later --parent dumps read only those; every "
                   "later leave-running dump of the tree keeps the tracking up to date");
    cmd_->add_flag("--pre-copy", r_.pre_copy,
                   "copy the memory in rounds while the process runs (each round only what it wrote since the "
                   "one before, into DIR/pre-copy/N), then freeze it and copy only what it wrote since: a short "
                   "frozen time; DIR is an ordinary image (restore -D DIR)");
    cmd_->add_option("--pre-copy-rounds", r_.pre_copy_opts.max_rounds,
                     "with --pre-copy: at most N rounds before the final one (default 6; fewer when the pages "
                     "written between rounds are few or stop shrinking)")
        ->type_name("N");
    // Accepted for CRIU's command line: connections are always checkpointed.
    cmd_->add_flag("--tcp-established", tcp_established_,
                   "accepted for compatibility: established TCP connections are always checkpointed");
    return cmd_;
  }

  bool CatchesInterrupts() const override { return true; }

  int Run() override {
    if (!r_.to.empty()) {
      if (!r_.dump.images_dir.empty()) return UsageError("dump: give -D DIR or --to ADDR:PORT, not both");
      if (std::optional<int> rc = StreamUsageError("dump --to", r_.tls, r_.insecure)) return *rc;
    } else if (r_.tls.enabled() || r_.insecure) {
      return UsageError("dump: --insecure and the --tls-* options go with --to ADDR:PORT");
    } else if (cmd_->count("--compress")) {
      Result<image::Compression> on_disk = image::ParseCompression(r_.compress, /*default_zstd_level=*/3);
      if (!on_disk.ok()) return UsageError("dump: " + on_disk.status().message());
      r_.dump.compression = *on_disk;
      r_.compress = "none";  // the wire's option, unused without --to
    }
    r_.pre_copy_rounds_given = cmd_->count("--pre-copy-rounds") > 0;
    r_.dump.cow = !no_cow_;
    return RunDump(r_);
  }

 private:
  CLI::App* cmd_ = nullptr;
  DumpRun r_;
  bool tcp_established_ = false;
  bool no_cow_ = false;
};

}  // namespace

std::unique_ptr<Command> NewDumpCommand() { return std::make_unique<DumpCommand>(); }

}  // namespace cryo::cli
