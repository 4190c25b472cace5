// cryo: checkpoint/restore for Linux processes.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <google/protobuf/stubs/logging.h>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/privileges.h"
#include "base/signal_forward.h"
#include "cgroup/cgroup_restore.h"
#include "check/features.h"
#include "check/probes.h"
#include "cli/counting_env.h"
#include "cli/messages.h"
#include "cli/preflight.h"
#include "dump/precopy.h"
#include "dump/dump.h"
#include "image/compare_pages.h"
#include "image/image_dir.h"
#include "image/show.h"
#include "net/net_lock.h"
#include "ns/join_ns.h"
#include "ns/tree_pidns.h"
#include "restore/pidns.h"
#include "mem/lazy_server.h"
#include "restore/restore.h"
#include "restore/run.h"
#include "stream/page_server.h"
#include "stream/postcopy.h"
#include "stream/stream_env.h"

namespace cryo {
namespace {

// Exit statuses (docs/cryo.1, EXIT STATUS): 1 for a command that failed, 2
// for a command line that is wrong (the option parser's errors included).
constexpr int kFailed = 1;
constexpr int kUsage = 2;

int Fail(const Status& s) {
  LOG_ERROR("%s", s.ToString().c_str());
  return kFailed;
}

int UsageError(const std::string& msg) {
  fprintf(stderr, "cryo: %s\nRun with --help for more information.\n", msg.c_str());
  return kUsage;
}

// A tree in a PID namespace of its own (`cryo run`) is dumped and checked from
// inside it (ns/tree_pidns.h): cryo forks a process there and waits for it,
// returning its exit status; that process goes on with *pid the tree's own.
std::optional<int> EnterTreePidns(pid_t* pid) {
  Result<pid_t> inner = ns::PidInChildPidns(*pid);
  if (!inner.ok()) return Fail(inner.status());
  if (!*inner) return std::nullopt;
  Result<pid_t> worker = ns::ForkInPidnsOf(*pid);
  if (!worker.ok()) return Fail(worker.status());
  if (*worker) return ns::WaitForDumper(*worker, *pid);
  *pid = *inner;
  return std::nullopt;
}

// How long a restore waits for the pids of its image still held by exiting
// processes (a zombie not reaped yet), before it tries anyway.
constexpr double kPidWaitSeconds = 10;
// cryo migrate --lazy: silence from the target that ends the serving (the
// target asks for pages or commits; its prefetch keeps asking until done).
constexpr double kPostCopyTimeoutSeconds = 120;

// --tls-cert, --tls-key, --tls-ca, --tls-psk (docs/stream-protocol.md, Security).
void AddTlsOptions(CLI::App* cmd, stream::TlsOptions* tls) {
  cmd->add_option("--tls-cert", tls->cert, "TLS: this side's certificate (PEM), signed by the CA the peer trusts")
      ->type_name("FILE");
  cmd->add_option("--tls-key", tls->key, "TLS: the private key of --tls-cert (PEM)")->type_name("FILE");
  cmd->add_option("--tls-ca", tls->ca, "TLS: the CA certificate(s) the peer's certificate must be signed by")
      ->type_name("FILE");
  cmd->add_option("--tls-psk", tls->psk,
                  "TLS with a pre-shared key instead of certificates: the same FILE on both sides (hex, 32 to 64 "
                  "bytes, mode 0600: openssl rand -hex 32 > FILE)")
      ->type_name("FILE");
}

bool g_quiet = false;
bool g_verbose = false;

// A line for the user on success (and in the log file); -q silences it.
void Say(const std::string& line) {
  if (!g_quiet && !g_verbose) fprintf(stderr, "cryo: %s\n", line.c_str());
  LOG_INFO("%s", line.c_str());  // on stderr with -v; in the log file
}

// The inventory of a complete image, if it can be read.
std::optional<image::Inventory> ReadInventory(const std::string& dir) {
  image::Inventory inv;
  if (!image::ReadRecord(dir, image::InventoryName(), image::FileKind::kInventory, &inv).ok()) return std::nullopt;
  return inv;
}

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

// `cryo page-server --restore` for `cryo migrate --lazy`: the tree restored
// lazily, its pages from the source (`remote`); returns once every page is
// in and the source was told, or the tree was killed.
Result<pid_t> RestorePostCopy(const std::string& dir, const std::string& pidfile, bool new_pidns,
                              RemotePageSource* remote) {
  RestoreOptions opts;
  opts.images_dir = dir;
  opts.detach = true;
  opts.pidfile = pidfile;
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

Result<pid_t> RestoreReceived(const std::string& dir, const std::string& pidfile, bool new_pidns) {
  RestoreOptions opts;
  opts.images_dir = dir;
  opts.detach = true;
  opts.pidfile = pidfile;
  if (const std::optional<image::Inventory> inv = ReadInventory(dir)) {
    const std::string held = cli::WaitForExitingPids({inv->pids().begin(), inv->pids().end()}, kPidWaitSeconds, Say);
    if (!held.empty()) LOG_WARN("%s", held.c_str());
  }
  if (new_pidns) return RestoreReceivedInPidns(opts, nullptr);
  return Restore(opts);
}

// "; 64.0 MiB of file data sent as 2.1 MiB (zstd 1)", or nothing uncompressed.
std::string CompressionNote(const stream::StreamEnv& s) {
  if (s.zstd_level() == 0) return "";
  char buf[160];
  snprintf(buf, sizeof(buf), "; %.1f MiB of file data sent as %.1f MiB (zstd %d)", s.bytes_sent() / 1048576.0,
           s.data_bytes_on_wire() / 1048576.0, s.zstd_level());
  return buf;
}

// `cryo migrate` once its tree is killed here: KILLED, then the receiver's
// restore. A failure now leaves the image in the receiver's directory.
int ReportMigrated(stream::StreamEnv& streamed, pid_t pid, size_t processes, double seconds) {
  Result<pid_t> there = streamed.ConfirmKilled();
  if (!there.ok()) {
    LOG_ERROR("migrate of pid %d: the tree was killed here once its image was complete in %s on the page server, "
              "which did not restore it: %s", pid, streamed.remote_dir().c_str(), there.status().ToString().c_str());
    LOG_ERROR("restore it there with: cryo restore -D %s", streamed.remote_dir().c_str());
    return kFailed;
  }
  Say("migrated " + std::to_string(processes) + " process(es) (pid " + std::to_string(pid) + ") in " +
      std::to_string(static_cast<int>(seconds * 1000)) + " ms: restored on the page server as pid " +
      std::to_string(*there) + " (image in " + streamed.remote_dir() + ")" + CompressionNote(streamed));
  return 0;
}

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

// With CRYO_FAULT_POINT=0 (the tests' count of fault points).
void ReportFaultPoints() {
  const char* at = getenv("CRYO_FAULT_POINT");
  if (at && std::string(at) == "0") fprintf(stderr, "cryo: fault points passed: %llu\n",
                                            static_cast<unsigned long long>(FaultPointsPassed()));
}

// A dump undone by SIGINT, SIGTERM, SIGHUP or SIGPIPE: the tree is detached
// as it was and the partial image removed. cryo then dies by the same signal,
// so that a shell running it in a loop stops too.
int Interrupted(int sig, pid_t pid, const Status& s) {
  LOG_DEBUG("%s", s.ToString().c_str());
  if (pid != ::getpid() && ::kill(pid, 0) == 0)
    fprintf(stderr, "cryo: dump interrupted: pid %d left running\n", pid);
  else
    fprintf(stderr, "cryo: dump interrupted\n");
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  return 128 + sig;
}

}  // namespace
}  // namespace cryo

int main(int argc, char** argv) {
  using namespace cryo;
  // Until the command is known (a dump catches them, the others die by them),
  // SIGINT, SIGTERM, SIGHUP and SIGPIPE wait.
  sigset_t interrupts, old_mask;
  sigemptyset(&interrupts);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaddset(&interrupts, sig);
  sigprocmask(SIG_BLOCK, &interrupts, &old_mask);
  CLI::App app{"cryo: checkpoint and restore Linux processes.\n\n"
               "  cryo check                     can this kernel checkpoint?\n"
               "  cryo check -t PID              can this tree be checkpointed? (what would be refused)\n"
               "  cryo dump -t PID -D DIR        checkpoint a process into DIR (then kill it)\n"
               "  cryo restore DIR               bring it back, with its PID, memory and files\n"
               "  cryo show DIR                  what an image holds\n"
               "  cryo run -- CMD ARGS           start a program in namespaces of its own, ready to checkpoint\n"
               "  cryo unlock DIR                let the TCP connections of an image go (no restore)\n"
               "  cryo page-server --listen ADDR:PORT -D DIR --tls-psk FILE   receive one streamed image into DIR\n"
               "  cryo dump -t PID --to ADDR:PORT --tls-psk FILE              checkpoint a process to a page server\n"
               "  cryo migrate -t PID --to ADDR:PORT --tls-psk FILE           move it to page-server --restore\n",
               "cryo"};
  app.set_version_flag("-V,--version", std::string("cryo ") + CRYO_VERSION + " (image format " +
                                           std::to_string(image::kFormatVersion) + ")");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "cryo: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  std::string log_file;
  int verbosity = 0;
  bool quiet = false;
  app.add_option("--log-file,-o", log_file, "append a detailed log to FILE")->type_name("FILE");
  app.add_flag("-v,--verbose", verbosity, "more messages on stderr (-vv for debug)");
  app.add_flag("-q,--quiet", quiet, "no line on success (errors and warnings are still printed)");
  // -t/--pid: a pid a process can have, or a usage error.
  const CLI::Validator pid_value([](std::string& text) { return cli::PidValueProblem(text); }, "", "pid");

  DumpOptions dump;
  auto* dump_cmd = app.add_subcommand("dump", "checkpoint a process into an image directory");
  dump_cmd->add_option("-t,--pid", dump.pid, "the process to checkpoint")->required()->check(pid_value)->type_name("PID");
  dump_cmd->add_option("-D,--images-dir", dump.images_dir, "where to write the image (created 0700)")->type_name("DIR");
  std::string dump_to;
  dump_cmd->add_option("--to", dump_to, "stream the image to `cryo page-server` at ADDR:PORT instead of writing it here")
      ->type_name("ADDR:PORT");
  bool insecure = false;
  dump_cmd->add_flag("--insecure", insecure,
                     "with --to: stream without encryption or authentication (a trusted link only)");
  stream::TlsOptions tls;
  AddTlsOptions(dump_cmd, &tls);
  std::string compress = "zstd";
  const std::string compress_help =
      "with --to: compress page data and records on the wire: zstd, zstd:LEVEL (1 to 19) or none (default zstd, "
      "level 1); the image the page server writes is not compressed";
  dump_cmd->add_option("--compress", compress,
                       "with -D: the page data of the image in compressed frames: zstd (level 3), zstd:LEVEL (1 to "
                       "19), lz4 or none (default none: an older cryo can restore the image; a compressed one needs "
                       "a cryo that knows the feature 'compressed-pages'); " + compress_help)
      ->type_name("zstd[:LEVEL]|lz4|none");
  dump_cmd->add_flag("-R,--leave-running", dump.leave_running,
                     "let the process run on after the dump: it resumes once its memory is read, before the image is "
                     "synced (default: kill it once the image is synced)");
  bool no_sync = false;
  dump_cmd->add_flag("--no-sync", no_sync,
                     "do not fsync the image: faster, but a crash or power loss before the kernel writes it back "
                     "loses the image and, in kill mode, the process with it");
  dump_cmd->add_flag("--shell-job", dump.shell_job, "the process runs in the caller's shell: its terminal is not part of the image");
  dump_cmd->add_flag("--ext-unix-sk", dump.ext_unix_sk,
                     "UNIX sockets connected to a socket outside the tree: a datagram one is connected again to that "
                     "name at restore, a stream one comes back closed by its peer");
  dump_cmd->add_flag("--udp-queue-unverified", dump.udp_queue_unverified,
                     "where the kernel's count of a UDP socket's queued datagrams is unavailable (no BPF iterator: "
                     "see cryo check), dump the datagrams cryo can peek at anyway: an empty datagram the program "
                     "already peeked at would be lost");
  bool progress = false;
  dump_cmd->add_flag("--progress", progress, "show progress while writing memory");
  bool force = false;
  dump_cmd->add_flag("-f,--force", force, "replace the image DIR already holds (refused without it)");
  dump_cmd->add_option("--parent", dump.parent_dir,
                       "incremental dump: store only the pages that changed since DIR, an earlier --leave-running "
                       "dump of the same tree; restoring this image needs DIR (and its own parents) where they were")
      ->type_name("DIR");
  dump_cmd->add_option("--snapshot-path", dump.snapshot_paths,
                       "carry the content of PATH (a file, a directory tree or a symbolic link, with mode, owner, "
                       "xattrs and times) in the image; the restore puts it back (repeatable)")
      ->allow_extra_args(false)
      ->type_name("PATH");
  dump_cmd->add_flag("--snapshot-open-files", dump.snapshot_open_files,
                     "carry the content of every regular file the tree holds open in the image (a database and its "
                     "journal); the restore puts them back");
  dump_cmd->add_flag("--track-mem", dump.track_mem,
                     "with --leave-running: track the pages the tree writes from now on (userfaultfd write-protect, "
                     "held by a small cryo-memtrack process), so that later --parent dumps read only those; every "
                     "later leave-running dump of the tree keeps the tracking up to date");
  bool pre_copy = false;
  PreCopyOptions pre_copy_opts;
  dump_cmd->add_flag("--pre-copy", pre_copy,
                     "copy the memory in rounds while the process runs (each round only what it wrote since the "
                     "one before, into DIR/pre-copy/N), then freeze it and copy only what it wrote since: a short "
                     "frozen time; DIR is an ordinary image (restore -D DIR)");
  dump_cmd->add_option("--pre-copy-rounds", pre_copy_opts.max_rounds,
                       "with --pre-copy: at most N rounds before the final one (default 6; fewer when the pages "
                       "written between rounds are few or stop shrinking)")
      ->type_name("N");
  bool tcp_established = false;  // accepted for CRIU's command line: connections are always checkpointed
  dump_cmd->add_flag("--tcp-established", tcp_established,
                     "accepted for compatibility: established TCP connections are always checkpointed");

  RestoreOptions restore;
  auto* restore_cmd = app.add_subcommand("restore", "restore a process from an image directory");
  std::string restore_dir;
  restore_cmd->add_option("dir", restore_dir, "the image to restore (or -D DIR)")->type_name("DIR");
  restore_cmd->add_option("-D,--images-dir", restore.images_dir, "the image to restore (or DIR)")->type_name("DIR");
  restore_cmd->add_flag("-d,--detach", restore.detach, "return once the process runs (default: stay its parent and exit with its status)");
  restore_cmd->add_option("--pidfile", restore.pidfile, "write the restored root pid to FILE")->type_name("FILE");
  std::string pidns;
  restore_cmd->add_option("--pidns", pidns,
                          "new: restore into a new PID namespace (and mount namespace with its own /proc), with the "
                          "image's pids inside it, beside the original or other copies; the pidfile gets the host pid")
      ->check(CLI::IsMember({"new"}))
      ->type_name("new");
  restore_cmd->add_option("--join-ns", restore.join_ns,
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
  restore_cmd->add_option("--veth-peer-ns", restore.veth_peer_ns,
                          "make the outside ends of the tree's veth pairs in this network namespace (default: where "
                          "they were, /run/netns/NAME or cryo's own)")
      ->type_name("PATH");
  restore_cmd->add_flag("--lazy", restore.lazy,
                        "resume the tree at once: its private anonymous pages come from the image on first touch "
                        "(userfaultfd) and from a background prefetch; cryo stays until every page is in (a page "
                        "that cannot be read kills the tree)");
  restore_cmd->add_flag("--tcp-close", restore.tcp_close,
                        "restore TCP connections reset by their peer (the program's next recv/send fails with "
                        "ECONNRESET) instead of established");
  restore_cmd->add_flag("--shell-job", restore.shell_job, "restore a --shell-job image onto cryo's own terminal, in cryo's session");
  restore_cmd->add_flag("--ignore-changed-files", restore.ignore_changed_files,
                        "restore even if files the tree refers to changed since the dump (each is named in a warning)");
  restore_cmd->add_flag("--no-restore-files", restore.no_restore_files,
                        "do not put back the files the image carries (--snapshot-path): they are checked for changes "
                        "like every other file");
  restore_cmd->add_option("--allow-changed", restore.allow_changed,
                          "restore even if this file changed since the dump (repeatable)")
      ->allow_extra_args(false)
      ->type_name("PATH");
  restore_cmd->add_option("--cgroup-root", restore.cgroup_roots,
                          "place the tree's cgroups below PATH instead of below cryo's own cgroup; "
                          "HIERARCHY:PATH for one hierarchy (v1 controllers as in /proc/PID/cgroup, or cgroup2); repeatable")
      ->check(CLI::Validator(
          [](std::string& value) {
            auto roots = cgroup::ParseCgroupRoots({value});
            return roots.ok() ? std::string() : roots.status().message();
          },
          "", "cgroup root"))
      ->type_name("[HIERARCHY:]PATH");

  std::string show_dir;
  bool show_json = false;
  auto* show_cmd = app.add_subcommand("show", "print what an image holds");
  show_cmd->add_option("dir", show_dir, "image directory")->required()->type_name("DIR");
  show_cmd->add_flag("--json", show_json, "machine-readable output");
  std::string compare_pages;
  show_cmd->add_option("--compare-pages", compare_pages,
                       "verification: every page DIR stores (its chain's too) is stored by OTHER with the same bytes, "
                       "and the other way round; exits 1 naming the first difference")
      ->type_name("OTHER");

  std::string unlock_dir, unlock_table;
  auto* unlock_cmd = app.add_subcommand(
      "unlock", "remove the network lock that holds an image's TCP connections since a dump (the restore does it too)");
  unlock_cmd->add_option("dir", unlock_dir, "image directory whose lock goes")->type_name("DIR");
  unlock_cmd->add_option("--table", unlock_table, "the lock's nftables table (cryo-lock-...), for an image that is gone")
      ->type_name("NAME");
  bool unlock_stale = false;
  unlock_cmd->add_flag("--stale", unlock_stale, "remove the locks of dumps that died (killed) before they finished");

  bool check_json = false, check_refresh = false, check_all = false, check_shell_job = false;
  pid_t check_pid = 0;
  auto* check_cmd = app.add_subcommand("check", "probe the kernel features cryo relies on; with -t PID, whether that tree can be checkpointed");
  check_cmd->add_flag("--json", check_json, "machine-readable output");
  check_cmd->add_flag("--refresh", check_refresh, "probe again instead of using the cached result");
  check_cmd->add_option("-t,--pid", check_pid, "classify everything the tree of PID holds (restored or refused), without dumping it")
      ->check(pid_value)
      ->type_name("PID");
  check_cmd->add_flag("--all", check_all, "with -t: list every item, not a summary");
  check_cmd->add_flag("--shell-job", check_shell_job, "with -t: as dump --shell-job");

  stream::PageServerOptions server;
  auto* server_cmd = app.add_subcommand("page-server", "receive one image streamed by `cryo dump --to` into a directory");
  server_cmd->add_option("--listen", server.listen, "the address to listen on (port 0: any free port, printed)")
      ->required()
      ->type_name("ADDR:PORT");
  server_cmd->add_option("-D,--images-dir", server.images_dir, "where the image goes (must not exist, or be empty)")
      ->required()
      ->type_name("DIR");
  server_cmd->add_flag("--insecure", insecure, "receive without encryption or authentication (a trusted link only)");
  AddTlsOptions(server_cmd, &tls);
  server_cmd->add_option("--timeout", server.timeout_s, "give up after SECS of silence from the sender (default 60)")
      ->check(CLI::PositiveNumber)
      ->type_name("SECS");
  server_cmd->add_option("--wait", server.wait_s, "wait at most SECS for the sender to connect (default 3600)")
      ->check(CLI::PositiveNumber)
      ->type_name("SECS");
  bool server_restore = false;
  server_cmd->add_flag("--restore", server_restore,
                       "receive a tree from `cryo migrate` and restore it here once the source has killed it "
                       "(the image stays in DIR)");
  std::string server_pidfile;
  server_cmd->add_option("--pidfile", server_pidfile, "with --restore: write the restored root pid to FILE")
      ->type_name("FILE");
  std::string server_pidns;
  server_cmd->add_option("--pidns", server_pidns,
                         "with --restore: new: restore into a new PID namespace (as cryo restore --pidns new), "
                         "beside the source tree: needed on one machine with cryo migrate --lazy, whose source "
                         "tree keeps its pids (frozen) until every page is in; the pidfile gets the host pid")
      ->check(CLI::IsMember({"new"}))
      ->type_name("new");

  auto* migrate_cmd = app.add_subcommand(
      "migrate", "move a process tree to `cryo page-server --restore` at ADDR:PORT: streamed, restored there, killed "
                 "here once the image is safe there");
  migrate_cmd->add_option("-t,--pid", dump.pid, "the process to migrate")->required()->check(pid_value)->type_name("PID");
  migrate_cmd->add_option("--to", dump_to, "the page server (cryo page-server --restore) at ADDR:PORT")
      ->required()
      ->type_name("ADDR:PORT");
  migrate_cmd->add_flag("--insecure", insecure, "stream without encryption or authentication (a trusted link only)");
  AddTlsOptions(migrate_cmd, &tls);
  migrate_cmd->add_flag("--ext-unix-sk", dump.ext_unix_sk, "as cryo dump --ext-unix-sk");
  migrate_cmd->add_flag("--udp-queue-unverified", dump.udp_queue_unverified, "as cryo dump --udp-queue-unverified");
  migrate_cmd->add_option("--compress", compress, compress_help)->type_name("zstd[:LEVEL]|none");
  migrate_cmd->add_flag("--pre-copy", pre_copy,
                        "copy the memory in rounds while the tree runs, then freeze it and send only what it wrote "
                        "since (as cryo dump --pre-copy): a short downtime");
  migrate_cmd->add_option("--pre-copy-rounds", pre_copy_opts.max_rounds, "as cryo dump --pre-copy-rounds")
      ->type_name("N");
  bool post_copy = false;
  migrate_cmd->add_flag("--lazy", post_copy,
                        "post-copy: freeze the tree and send everything but its private memory; the tree runs on "
                        "the page server at once and fetches its pages from here (first touch, then a background "
                        "prefetch), the original stays frozen until every page is there, then is killed. If the link "
                        "or either side dies once the tree ran there, the tree is lost on both sides. On one machine "
                        "the page server needs --pidns new");

  RunOptions run;
  std::string run_pidfile;
  auto* run_cmd = app.add_subcommand("run", "start a program in fresh namespaces suited to checkpointing (a PID "
                                            "namespace of its own, whose init is cryo's), detached; prints its pid");
  run_cmd->add_option("--ns", run.namespaces,
                      "its namespaces, from pid, mnt, net, ipc, uts (pid and mnt required; default pid,mnt)")
      ->type_name("KINDS");
  run_cmd->add_option("--pidfile", run_pidfile, "write the program's pid to FILE")->type_name("FILE");
  run_cmd->add_option("command", run.argv, "the program and its arguments (after --)")->required()->type_name("CMD");

  for (auto* sub : {dump_cmd, restore_cmd, show_cmd, check_cmd, unlock_cmd, server_cmd, migrate_cmd, run_cmd}) {
    sub->add_option("--log-file,-o", log_file, "append a detailed log to FILE")->type_name("FILE");
    sub->add_flag("-v,--verbose", verbosity, "more messages on stderr (-vv for debug)");
    sub->add_flag("-q,--quiet", quiet, "no line on success (errors and warnings are still printed)");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // "A subcommand is required" would hide a mistyped command.
    const std::string command = cli::FirstWord(argc, argv, {"-o", "--log-file"});
    const auto subs = {dump_cmd, restore_cmd, show_cmd, check_cmd, unlock_cmd, server_cmd, migrate_cmd, run_cmd};
    if (!command.empty() && std::none_of(subs.begin(), subs.end(), [&](auto* c) { return c->get_name() == command; }))
      return UsageError("unknown command '" + command + "' (the commands are check, dump, restore, run, show, unlock, page-server and migrate)");
    const int rc = app.exit(e);  // prints help, the version or the error
    return rc == 0 ? 0 : kUsage;
  }
  InitFaultPoints();
  if (*dump_cmd || *server_cmd || *migrate_cmd) CatchInterrupts();
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  // A record that does not parse is refused with cryo's own message (naming
  // the file); protobuf's log lines about it would only add noise.
  google::protobuf::SetLogHandler(nullptr);
  if (*restore_cmd) {
    if (restore_dir.empty() && restore.images_dir.empty())
      return UsageError("restore: the image directory is missing: cryo restore DIR (or -D DIR)");
    if (!restore_dir.empty() && !restore.images_dir.empty() && restore_dir != restore.images_dir)
      return UsageError("restore: two image directories given (" + restore_dir + " and -D " + restore.images_dir + ")");
    if (restore.images_dir.empty()) restore.images_dir = restore_dir;
    restore.new_pidns = pidns == "new";
  }
  g_quiet = quiet;
  g_verbose = verbosity >= 1;
  SetStderrLogLevel(verbosity >= 2 ? LogLevel::kDebug : verbosity == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  if (Status s = check::CheckPretendedNames(); !s.ok()) return Fail(s);
  if (!log_file.empty()) {
    Status s = OpenLogFile(log_file);
    if (!s.ok()) return Fail(s);
  }

  if ((*dump_cmd && !dump_to.empty()) || *server_cmd || *migrate_cmd) {
    if (*dump_cmd && !dump.images_dir.empty()) return UsageError("dump: give -D DIR or --to ADDR:PORT, not both");
    const std::string cmd = *server_cmd ? "page-server" : *migrate_cmd ? "migrate" : "dump --to";
    if (!server_pidfile.empty() && !server_restore) return UsageError("page-server: --pidfile goes with --restore");
    if (std::string p = tls.UsageProblem(); !p.empty()) return UsageError(cmd + ": " + p);
    if (insecure && tls.enabled())
      return UsageError(cmd + ": --insecure turns TLS off: give it or the --tls-* options, not both");
    if (!insecure && !tls.enabled())
      return UsageError(cmd + ": the stream is encrypted and authenticated with TLS: give both sides "
                        "--tls-psk FILE (the same key: openssl rand -hex 32 > FILE) or --tls-cert FILE "
                        "--tls-key FILE --tls-ca FILE; or --insecure on both sides if the link between them is "
                        "trusted (loopback, a private network)");
    server.tls = tls;
  } else if (*dump_cmd && (tls.enabled() || insecure)) {
    return UsageError("dump: --insecure and the --tls-* options go with --to ADDR:PORT");
  } else if (*dump_cmd && dump_cmd->count("--compress")) {
    Result<image::Compression> on_disk = image::ParseCompression(compress, /*default_zstd_level=*/3);
    if (!on_disk.ok()) return UsageError("dump: " + on_disk.status().message());
    dump.compression = *on_disk;
    compress = "none";  // the wire's option, unused without --to
  }
  Result<int> zstd_level = stream::ParseCompression(compress);
  if (!zstd_level.ok()) return UsageError(zstd_level.status().message());
  if ((*dump_cmd || *migrate_cmd) && (dump_cmd->count("--pre-copy-rounds") || migrate_cmd->count("--pre-copy-rounds")) &&
      !pre_copy)
    return UsageError("--pre-copy-rounds goes with --pre-copy");
  if (pre_copy && !dump.parent_dir.empty())
    return UsageError("dump: --pre-copy makes its own chain of images: it does not take --parent");
  if (*dump_cmd && dump.images_dir.empty() && dump_to.empty())
    return UsageError("dump: the image directory is missing: give -D DIR (or --to ADDR:PORT)");
  if (*server_cmd) {
    if (!server_pidns.empty() && !server_restore) return UsageError("page-server: --pidns goes with --restore");
    if (server_restore) {
      server.restore = [&](const std::string& dir) { return RestoreReceived(dir, server_pidfile, !server_pidns.empty()); };
      server.restore_post_copy = [&](const std::string& dir, RemotePageSource* remote) {
        return RestorePostCopy(dir, server_pidfile, !server_pidns.empty(), remote);
      };
    }
    server.on_listening = [](const std::string& addr) {
      fprintf(stderr, "cryo: page-server listening on %s\n", addr.c_str());
      fflush(stderr);
    };
    stream::ReceivedImage got;
    const double t0 = Now();
    Status s = stream::RunPageServer(server, &got);
    ReportFaultPoints();
    if (!s.ok()) {
      LOG_ERROR("page-server: %s", s.ToString().c_str());
      if (::access(server.images_dir.c_str(), F_OK) != 0)
        LOG_ERROR("page-server: nothing was kept (no %s)", server.images_dir.c_str());
      return kFailed;
    }
    Say(cli::ReceivedLine(got.peer + (server.tls.enabled() ? " over TLS" : " (insecure)"), server.images_dir,
                          got.files, got.bytes, Now() - t0) +
        (got.restored ? "; restored, root pid " + std::to_string(got.restored) : ""));
    return 0;
  }
  if (*dump_cmd || *migrate_cmd) {
    dump.show_progress = progress;
    dump.sync = !no_sync;
    // Privileges first (the dump checks them again): without them even the
    // image directory's check may fail on a permission, naming the wrong cause.
    if (Status priv = CheckPrivileges(); !priv.ok()) return Fail(priv);
    if (std::optional<int> rc = EnterTreePidns(&dump.pid)) return *rc;
    std::unique_ptr<stream::Connection> conn;
    std::unique_ptr<stream::StreamEnv> streamed;
    if (!dump_to.empty()) {
      // Connected before the tree is seized: a page server that is not there
      // costs the tree nothing.
      if (post_copy && pre_copy) return UsageError("migrate: --lazy and --pre-copy are two ways to migrate: give one");
      auto c = stream::StreamEnv::Open(dump_to, 60, tls, /*migrate=*/static_cast<bool>(*migrate_cmd), post_copy);
      if (!c.ok()) return Fail(c.status().Prefixed((*migrate_cmd ? "migrate --to " : "dump --to ") + dump_to));
      conn = std::move(*c);
      streamed = std::make_unique<stream::StreamEnv>(conn.get());
      streamed->set_zstd_level(*zstd_level);
      dump.env = streamed.get();
      dump.images_dir = dump_to;
      if (post_copy) {
        stream::Connection* link = conn.get();
        dump.post_copy = [link](const stream::RemoteRuns& runs, const std::function<Status()>& commit,
                                bool* committed) {
          return stream::ServePostCopy(*link, runs, kPostCopyTimeoutSeconds, commit, committed);
        };
      }
    } else {
      Status free = cli::CheckImageDirFree(dump.images_dir, force);
      if (!free.ok()) return Fail(free);
    }
    cli::CountingEnv counted(dump.env);
    dump.env = &counted;
    const double t0 = Now();
    DumpStats stats;
    pre_copy_opts.report = Say;
    if (streamed) pre_copy_opts.begin_round = [&streamed](int round) { return streamed->BeginRound(round); };
    Status s = pre_copy ? PreCopyDump(dump, pre_copy_opts, &stats) : Dump(dump, &stats);
    if (!s.ok() && streamed) streamed->Abort(s.ToString());
    ReportFaultPoints();
    if (const int sig = InterruptSignal()) {
      if (!s.ok()) return Interrupted(sig, dump.pid, s);
      LOG_WARN("SIG%s came once the image was complete: the dump went to its end", sigabbrev_np(sig));
    }
    if (!s.ok()) {
      LOG_ERROR("dump of pid %d failed: %s", dump.pid, s.ToString().c_str());
      if (dump.pid != ::getpid() && dump.pid != ::getppid() && ::kill(dump.pid, 0) == 0)
        LOG_ERROR("pid %d was left running, untouched", dump.pid);
      return 1;
    }
    if (*migrate_cmd && post_copy) {
      Say("migrated " + std::to_string(stats.processes) + " process(es) (pid " + std::to_string(dump.pid) +
          ") post-copy in " + std::to_string(static_cast<int>((Now() - t0) * 1000)) +
          " ms: every page is on the page server, the tree killed here (image in " + streamed->remote_dir() + ")" +
          CompressionNote(*streamed));
      return 0;
    }
    if (*migrate_cmd) return ReportMigrated(*streamed, dump.pid, stats.processes, Now() - t0);
    if (streamed)
      dump.images_dir = "page server " + dump_to + (conn->encrypted() ? " over TLS" : " (insecure)") + " (" +
                        streamed->remote_dir() + ")" + CompressionNote(*streamed);
    Say(cli::DumpedLine(stats.processes, dump.pid, dump.images_dir,
                        streamed ? streamed->bytes_sent() : counted.BytesWritten(), Now() - t0,
                        stats.frozen_seconds, dump.sync));
    return 0;
  }
  if (*run_cmd) {
    if (Status priv = CheckPrivileges(); !priv.ok()) return Fail(priv);
    Result<RunStarted> r = RunInFreshNamespaces(run);
    if (!r.ok()) return Fail(r.status().Prefixed("run"));
    if (!run_pidfile.empty()) {
      std::ofstream pf(run_pidfile, std::ios::trunc);
      pf << r->pid << "\n";
      if (!pf) return Fail(Status::Error("cannot write pidfile " + run_pidfile + " (pid " + std::to_string(r->pid) + " runs)"));
    }
    printf("%d\n", r->pid);
    LOG_INFO("pid %d runs in namespaces of its own, its init host pid %d", r->pid, r->init);
    return 0;
  }
  if (*restore_cmd && restore.new_pidns) {
    const std::optional<image::Inventory> inv = ReadInventory(restore.images_dir);
    const double t0 = Now();
    Result<PidnsRestored> r = RestoreInNewPidns(restore);
    ReportFaultPoints();
    if (!r.ok()) {
      LOG_ERROR("restore from %s failed: %s", restore.images_dir.c_str(), r.status().ToString().c_str());
      return 1;
    }
    // Attached, the signals the tree gets through cryo are forwarded from the
    // moment the pidfile names it.
    if (!restore.detach) ForwardSignalsTo(r->init);
    if (!restore.pidfile.empty()) {
      std::ofstream pf(restore.pidfile, std::ios::trunc);
      pf << r->root_host << "\n";
      if (!pf) {
        // The restore fails: its namespace goes with its init.
        ::kill(r->init, SIGKILL);
        ::waitpid(r->init, nullptr, 0);
        return Fail(Status::Error("cannot write pidfile " + restore.pidfile + "; the restored tree was killed"));
      }
    }
    Say(cli::RestoredLine(inv ? inv->pids_size() : 1, r->root, Now() - t0) + "; in a new PID namespace: host pid " +
        std::to_string(r->root_host) + ", its init host pid " + std::to_string(r->init));
    // --lazy: the namespace's init serves the pages; cryo reports how it went.
    if (restore.detach && r->lazy_fd < 0) return 0;
    if (restore.detach) {
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
  if (*restore_cmd) {
    // After a kill-mode dump the original's pids are free only once its
    // parent reaps it: say what the restore waits for, and how long at most.
    const std::optional<image::Inventory> inv = ReadInventory(restore.images_dir);
    if (inv) {
      const std::string held = cli::WaitForExitingPids({inv->pids().begin(), inv->pids().end()}, kPidWaitSeconds, Say);
      if (!held.empty()) LOG_WARN("%s", held.c_str());
    }
    const double t0 = Now();
    std::unique_ptr<LazyServer> lazy;
    Result<pid_t> pid = Restore(restore, &lazy);
    ReportFaultPoints();
    if (!pid.ok()) {
      LOG_ERROR("restore from %s failed: %s", restore.images_dir.c_str(), pid.status().ToString().c_str());
      return 1;
    }
    Say(cli::RestoredLine(inv ? inv->pids_size() : 1, *pid, Now() - t0));
    // --lazy --detach: cryo stays until every page is in (the server logs
    // the report, or names the page that failed and kills the tree).
    if (restore.detach) {
      if (!lazy) return 0;
      if (!lazy->Wait().ok()) return 1;
      Say(lazy->Report());
      return 0;
    }
    return WaitAsParent(*pid, -1, lazy.get());
  }
  if (*show_cmd && !compare_pages.empty()) {
    Result<std::string> same = image::ComparePages(show_dir, compare_pages);
    if (!same.ok()) return Fail(same.status().Prefixed("the pages of " + show_dir + " and " + compare_pages + " differ"));
    Say(*same);
    return 0;
  }
  if (*show_cmd) {
    Result<image::LoadedImage> img = image::LoadImage(show_dir);
    if (!img.ok()) return Fail(img.status());
    std::string out = show_json ? image::ShowJson(*img) : image::ShowText(*img);
    fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  if (*unlock_cmd) {
    if (unlock_stale) {
      if (!unlock_dir.empty() || !unlock_table.empty()) return UsageError("unlock: --stale takes no image or table");
      std::vector<std::string> removed;
      if (Status s = RemoveStaleNetLocks(&removed); !s.ok()) return Fail(s);
      Say(std::to_string(removed.size()) + " stale network lock(s) removed");
      return 0;
    }
    if (unlock_dir.empty() == unlock_table.empty())
      return UsageError("unlock: give an image directory, --table NAME or --stale");
    std::string table = unlock_table;
    if (table.empty()) {
      const std::optional<image::Inventory> inv = ReadInventory(unlock_dir);
      if (!inv) return Fail(Status::Error(unlock_dir + ": no complete image here"));
      table = inv->net_lock();
      if (table.empty()) {
        Say(unlock_dir + ": the image holds no network lock");
        return 0;
      }
    }
    if (!IsNetLockName(table)) return UsageError("unlock: \"" + table + "\" is no network lock of cryo's");
    if (Status s = RemoveNetLock(table); !s.ok()) return Fail(s);
    Say("network lock " + table + " removed: the connections it held are free (their peers may reset them)");
    return 0;
  }
  if (*check_cmd && check_cmd->count("--pid")) {
    const pid_t host_pid = check_pid;
    if (std::optional<int> rc = EnterTreePidns(&check_pid)) return *rc;
    if (check_pid != host_pid)
      std::printf("pid %d lives in a PID namespace of its own, where it is pid %d: checked from inside it\n", host_pid,
                  check_pid);
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
