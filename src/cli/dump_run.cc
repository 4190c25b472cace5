#include "cli/dump_run.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/privileges.h"
#include "cli/command.h"
#include "cli/counting_env.h"
#include "cli/messages.h"
#include "cli/preflight.h"
#include "net/net_lock.h"
#include "stream/postcopy.h"
#include "stream/stream_env.h"

namespace cryo::cli {

namespace {

// cryo's own high-water resident size (VmHWM of /proc/self/status, proc(5)):
// issue 13 wants it <= 16 MiB at any target size (tests/e2e/test_cowchurn.py).
void LogPeakRss() {
  auto status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return;
  const size_t at = status->find("\nVmHWM:");
  if (at == std::string::npos) return;
  LOG_DEBUG("cryo's peak RSS: %llu KiB (VmHWM)", std::strtoull(status->c_str() + at + 7, nullptr, 10));
}

// cryo migrate --lazy: silence from the target that ends the serving (the
// target asks for pages or commits; its prefetch keeps asking until done).
constexpr double kPostCopyTimeoutSeconds = 120;

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
// The tree's TCP connections stay locked here (`net_lock`) until the receiver
// has restored them (net/tcp_migrate.h); then the lock goes.
int ReportMigrated(stream::StreamEnv& streamed, pid_t pid, size_t processes, double seconds,
                   const std::string& net_lock) {
  Result<pid_t> there = streamed.ConfirmKilled();
  if (!there.ok()) {
    LOG_ERROR("migrate of pid %d: the tree was killed here once its image was complete in %s on the page server, "
              "which did not restore it: %s", pid, streamed.remote_dir().c_str(), there.status().ToString().c_str());
    LOG_ERROR("restore it there with: cryo restore -D %s", streamed.remote_dir().c_str());
    if (!net_lock.empty())
      LOG_ERROR("its TCP connections stay locked here (nftables table inet %s): once restored there, remove it with "
                "cryo unlock --table %s", net_lock.c_str(), net_lock.c_str());
    return kFailed;
  }
  if (!net_lock.empty()) {
    if (Status u = RemoveNetLock(net_lock); !u.ok()) {
      LOG_ERROR("migrate of pid %d: restored on the page server, but the lock of its TCP connections here stays: %s "
                "(remove it with cryo unlock --table %s)", pid, u.ToString().c_str(), net_lock.c_str());
      return kFailed;
    }
  }
  Say("migrated " + std::to_string(processes) + " process(es) (pid " + std::to_string(pid) + ") in " +
      std::to_string(static_cast<int>(seconds * 1000)) + " ms: restored on the page server as pid " +
      std::to_string(*there) + " (image in " + streamed.remote_dir() + ")" + CompressionNote(streamed));
  return 0;
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

int RunDump(DumpRun& r) {
  DumpOptions& dump = r.dump;
  Result<int> zstd_level = stream::ParseCompression(r.compress);
  if (!zstd_level.ok()) return UsageError(zstd_level.status().message());
  if (r.pre_copy_rounds_given && !r.pre_copy) return UsageError("--pre-copy-rounds goes with --pre-copy");
  if (r.pre_copy && !dump.parent_dir.empty())
    return UsageError("dump: --pre-copy makes its own chain of images: it does not take --parent");
  if (dump.images_dir.empty() && r.to.empty())
    return UsageError("dump: the image directory is missing: give -D DIR (or --to ADDR:PORT)");
  dump.show_progress = r.progress;
  dump.sync = !r.no_sync;
  // Privileges first (the dump checks them again): without them even the
  // image directory's check may fail on a permission, naming the wrong cause.
  if (Status priv = CheckPrivileges(); !priv.ok()) return Fail(priv);
  if (std::optional<int> rc = EnterTreePidns(&dump.pid)) return *rc;
  std::unique_ptr<stream::Connection> conn;
  std::unique_ptr<stream::StreamEnv> streamed;
  if (!r.to.empty()) {
    // Connected before the tree is seized: a page server that is not there
    // costs the tree nothing.
    if (r.post_copy && r.pre_copy) return UsageError("migrate: --lazy and --pre-copy are two ways to migrate: give one");
    auto c = stream::StreamEnv::Open(r.to, 60, r.tls, /*migrate=*/r.migrate, r.post_copy);
    if (!c.ok()) return Fail(c.status().Prefixed((r.migrate ? "migrate --to " : "dump --to ") + r.to));
    conn = std::move(*c);
    streamed = std::make_unique<stream::StreamEnv>(conn.get());
    streamed->set_zstd_level(*zstd_level);
    dump.env = streamed.get();
    dump.images_dir = r.to;
    if (r.post_copy) {
      stream::Connection* link = conn.get();
      dump.post_copy = [link](const stream::RemoteRuns& runs, const std::function<Status()>& commit, bool* committed) {
        return stream::ServePostCopy(*link, runs, kPostCopyTimeoutSeconds, commit, committed);
      };
    }
  } else {
    Status free = CheckImageDirFree(dump.images_dir, r.force);
    if (!free.ok()) return Fail(free);
  }
  CountingEnv counted(dump.env);
  dump.env = &counted;
  const double t0 = Now();
  DumpStats stats;
  PreCopyOptions& pre_copy_opts = r.pre_copy_opts;
  pre_copy_opts.report = Say;
  if (streamed) pre_copy_opts.begin_round = [&streamed](int round) { return streamed->BeginRound(round); };
  Status s = r.pre_copy ? PreCopyDump(dump, pre_copy_opts, &stats) : Dump(dump, &stats);
  // A copy-on-write copy the program outran by unmapping or discarding
  // memory cryo had not copied yet (mem/cow_copy.h): the tree runs on, the
  // partial image is gone; the dump is made again from the start with the
  // memory copied during the freeze (an image of that second freeze).
  if (!s.ok() && stats.cow_memory_changed && !streamed && !r.pre_copy && InterruptSignal() == 0) {
    LOG_INFO("%s; dumping again with the memory copied during the freeze (--no-cow)", s.ToString().c_str());
    Say("the program unmapped or discarded memory during the copy-on-write copy; dumping again with --no-cow");
    dump.cow = false;
    stats = DumpStats();
    s = Dump(dump, &stats);
  }
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
  if (r.migrate && r.post_copy) {
    // Every page is on the page server and the tree killed here; its TCP
    // connections were restored there (net/tcp_migrate.h): the lock goes.
    if (!stats.net_lock.empty())
      if (Status u = RemoveNetLock(stats.net_lock); !u.ok())
        LOG_ERROR("migrate of pid %d: the lock of its TCP connections here stays: %s (remove it with cryo unlock "
                  "--table %s)", dump.pid, u.ToString().c_str(), stats.net_lock.c_str());
    Say("migrated " + std::to_string(stats.processes) + " process(es) (pid " + std::to_string(dump.pid) +
        ") post-copy in " + std::to_string(static_cast<int>((Now() - t0) * 1000)) +
        " ms: every page is on the page server, the tree killed here (image in " + streamed->remote_dir() + ")" +
        CompressionNote(*streamed));
    return 0;
  }
  if (r.migrate) return ReportMigrated(*streamed, dump.pid, stats.processes, Now() - t0, stats.net_lock);
  if (streamed)
    dump.images_dir = "page server " + r.to + (conn->encrypted() ? " over TLS" : " (insecure)") + " (" +
                      streamed->remote_dir() + ")" + CompressionNote(*streamed);
  Say(DumpedLine(stats.processes, dump.pid, dump.images_dir,
                 streamed ? streamed->bytes_sent() : counted.BytesWritten(), Now() - t0, stats.frozen_seconds,
                 dump.sync));
  LogPeakRss();
  return 0;
}

}  // namespace cryo::cli
