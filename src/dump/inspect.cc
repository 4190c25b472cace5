#include "dump/inspect.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "audit/audit.h"
#include "base/clock.h"
#include "base/fd_limit.h"
#include "base/log.h"
#include "files/fd_kind.h"
#include "files/fd_table.h"
#include "net/sock_diag.h"
#include "net/socket_options.h"
#include "net/unix_socket.h"

namespace cryo {

namespace {

// What one worker found.
struct WorkerResult {
  audit::Report report;
  std::set<std::string> lock_ids;
  size_t failed_at = SIZE_MAX;  // the process whose describing or audit failed
  Status error;
  double describe_s = 0, audit_s = 0;  // where the time went (debug log)
};

// Describes and audits processes [next, n) one at a time until none is left.
void Work(const std::vector<pid_t>& pids, const std::vector<std::vector<pid_t>>& tids, bool shell_job,
          const DumpScope* scope, const audit::Baseline& cryo, std::atomic<size_t>* next, std::vector<ProcessFacts>* facts,
          WorkerResult* out) {
  for (size_t i; (i = next->fetch_add(1)) < pids.size();) {
    const double t0 = Now();
    auto f = DescribeProcess(pids[i], shell_job, scope);
    const double t1 = Now();
    out->describe_s += t1 - t0;
    Status s = f.status();
    if (f.ok()) {
      (*facts)[i] = std::move(*f);
      const ProcessFacts& pf = (*facts)[i];
      audit::ProcessShown p;
      p.pid = pf.pid;
      p.tids = tids[i];
      p.status = pf.status_text;
      p.stat = pf.stat_text;
      p.smaps = pf.smaps_text;
      p.fds = &pf.fds;
      p.fd_infos = &pf.fd_infos;
      if (!pf.refusal.ok()) p.refusal = pf.refusal.ToString();
      // The entries of /proc/PID depend on the kernel only: the root's are enough.
      s = audit::AuditProcessFiles(p, cryo, i == 0, &out->report, &out->lock_ids);
      out->audit_s += Now() - t1;
    }
    if (!s.ok()) {
      if (i < out->failed_at) {
        out->failed_at = i;
        out->error = s.Prefixed("pid " + std::to_string(pids[i]));
      }
      return;
    }
  }
}

}  // namespace

Result<Inspection> InspectTree(SeizedTree& tree, bool shell_job, const DumpScope* scope) {
  const double t0 = Now();
  CRYO_ASSIGN_OR_RETURN(audit::Baseline cryo, audit::Baseline::OfCryo());
  const size_t n = tree.processes().size();
  std::vector<pid_t> pids;
  std::vector<std::vector<pid_t>> tids(n);
  audit::TreeShown shown;
  for (size_t i = 0; i < n; ++i) {
    SeizedProcess& sp = *tree.processes()[i];
    pids.push_back(sp.pid());
    for (const SeizedTask& t : sp.threads()) tids[i].push_back(t.tid);
    audit::ProcessShown p;
    p.pid = sp.pid();
    p.tids = tids[i];
    shown.processes.push_back(std::move(p));
  }
  for (const ZombieInfo& z : tree.zombies()) shown.zombies.push_back(z.pid);

  Inspection in;
  in.facts.resize(n);
  // /proc reading is most of it and needs no tracer: spread over the CPUs.
  const size_t workers = std::min<size_t>(n, std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4));
  std::vector<WorkerResult> results(workers);
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (size_t w = 1; w < workers; ++w) {
    try {
      threads.emplace_back(Work, std::cref(pids), std::cref(tids), shell_job, scope, std::cref(cryo), &next, &in.facts,
                           &results[w]);
    } catch (const std::system_error&) {
      break;  // fewer threads
    }
  }
  // The tracer's part meanwhile, then a share of the rest.
  for (const audit::ProcessShown& p : shown.processes) audit::AuditSeizeStops(p, &in.report);
  if (workers > 0) Work(pids, tids, shell_job, scope, cryo, &next, &in.facts, &results[0]);
  for (std::thread& t : threads) t.join();
  const WorkerResult* failed = nullptr;
  for (const WorkerResult& r : results)
    if (!r.error.ok() && (!failed || r.failed_at < failed->failed_at)) failed = &r;
  if (failed) return failed->error;
  std::set<std::string> lock_ids;
  double describe_s = 0, audit_s = 0;
  for (WorkerResult& r : results) {
    describe_s += r.describe_s;
    audit_s += r.audit_s;
    in.report.Merge(std::move(r.report));
    lock_ids.insert(r.lock_ids.begin(), r.lock_ids.end());
  }
  if (n) shown.root_parent = in.facts[0].stat.ppid;
  std::vector<std::pair<pid_t, image::FdTable*>> tables;
  for (ProcessFacts& f : in.facts) tables.push_back({f.pid, &f.fds});
  // Only over complete fd tables: a refused process's stops at its refusal.
  if (!in.report.refusals())
    CRYO_RETURN_IF_ERROR(LinkUnixSockets(tables, scope && scope->ext_unix_sk, n ? &in.facts[0].features : nullptr,
                                         &in.in_flight, scope));
  CRYO_RETURN_IF_ERROR(audit::AuditTreeWide(shown, lock_ids, &in.report));
  // What the restore will hold at once in cryo (and the dump, fewer: a
  // duplicate of each TCP socket) must fit below cryo's hard RLIMIT_NOFILE,
  // or the dump is refused here, the tree untouched (base/fd_limit.h).
  if (!in.report.refusals() && n) {
    std::vector<const image::FdTable*> fd_tables;
    size_t fds = 0;
    for (const ProcessFacts& f : in.facts) {
      fd_tables.push_back(&f.fds);
      fds += static_cast<size_t>(f.fds.fds_size());
    }
    const uint64_t need = RestoreFdsNeeded(fd_tables, static_cast<uint64_t>(in.in_flight.table()->fds_size()));
    if (Status s = CheckFdLimit(need, "restoring its " + std::to_string(fds) + " fds"); !s.ok())
      in.report.Refuse("pid " + std::to_string(pids[0]), "limits", "the tree: " + s.message());
  }
  for (ProcessFacts& f : in.facts) {
    // Read for the audit only.
    f.stat_text = std::string();
    f.status_text = std::string();
    f.smaps_text = std::string();
    f.fd_infos = {};
  }
  LOG_DEBUG("tree described and audited in %.1f ms on %zu threads (describing %.1f ms, auditing %.1f ms in all): %zu "
            "refused",
            (Now() - t0) * 1e3, workers, describe_s * 1e3, audit_s * 1e3, in.report.refusals());
  // What describing cost in the kernel, so far in this cryo (the socket paths).
  LOG_DEBUG("fds taken with pidfd_getfd: %llu; sock_diag: %llu exchanges on %llu netlink sockets; sockets made to "
            "compare options: %llu",
            static_cast<unsigned long long>(FdsTaken()), static_cast<unsigned long long>(SockDiagExchanges()),
            static_cast<unsigned long long>(SockDiagSocketsOpened()),
            static_cast<unsigned long long>(OptionSocketsMade()));
  return in;
}

}  // namespace cryo
