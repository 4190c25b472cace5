#include "dump/classify.h"

#include <signal.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <cinttypes>
#include <cstdio>
#include <algorithm>
#include <thread>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "base/clock.h"
#include "base/fd_limit.h"
#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/privileges.h"
#include "base/log.h"
#include "base/no_sync_env.h"
#include "base/size_format.h"
#include "cgroup/cgroup_dump.h"
#include "cgroup/cgroup_settings.h"
#include "files/fd_table.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "audit/remote_rules.h"
#include "dump/inspect.h"
#include "dump/prefetch.h"
#include "dump/shared_objects_check.h"
#include "dump/tcp_hold.h"
#include "mem/aio_ring.h"
#include "mem/dirty_tracker.h"
#include "ns/tree_mntns.h"
#include "mem/incremental.h"
#include "mem/mm_attrs.h"
#include "mem/page_dump.h"
#include "mem/shm_dump.h"
#include "files/file_facts.h"
#include "files/unlinked_dump.h"
#include "files/snapshot_dump.h"
#include "mem/vma_dump.h"
#include "net/udp_queue.h"
#include "ns/namespaces.h"
#include "ns/time_ns.h"
#include "ns/netns.h"
#include "ns/tree_pidns.h"
#include "proc/path_check.h"
#include "proc/path_check.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"
#include "seize/seize.h"
#include "tree/job_control.h"
#include "tree/proc_attrs.h"
#include "tree/task_dump.h"
#include "tree/tree_seize.h"
#include "files/file_locks.h"
#include "files/file_sharing.h"
#include "files/pipe_table.h"
#include "net/tcp_rewind.h"
#include "net/tcp_session.h"
#include "files/shared_tables.h"
#include "files/tty_table.h"
#include "tree/restore_plan.h"
#include "tree/seccomp.h"
#include "dump/dump.h"

namespace cryo {

namespace {

constexpr size_t kScratchSize = 64 << 10;  // cryo's remote scratch memory in each process

// The first half of collecting a process, for every process of the tree
// before any file is written: its task state, by ptrace and remote system
// calls (registers, signals, timers, credentials, ...). The attributes only
// a remote call shows are classified into `report` (audit/remote_rules.h).
// `may_trace` is set if the process might trace a task.
Status CollectTaskState(SeizedProcess& seized, ProcessFacts& facts, const SeccompState& seccomp,
                        DumpedProcess* out, std::set<std::string>* features, audit::Report* report, PhaseTimes* times,
                        bool* may_trace) {
  const pid_t pid = seized.pid();
  times->proc += facts.proc_s;
  times->fds += facts.fds_s;
  double t = Now();
  const SeccompCallCheck check(pid, seccomp);
  CRYO_ASSIGN_OR_RETURN(auto rs, RemoteSyscaller::Attach(seized, facts.vmas, facts.status.sig_ign,
                                                         facts.status.sig_cgt));
  rs->SetStopSink(seized.stop_sink());
  rs->SetUntracedCallCheck(&check);
  CRYO_RETURN_IF_ERROR(rs->MapScratch(kScratchSize).Prefixed("remote scratch memory"));
  const double t1 = Now();
  times->remote += t1 - t;
  // The audit's queries, then the memory settings' (mem/mm_attrs.h).
  std::vector<RemoteCall> extra = audit::RemoteQueryCalls();
  const size_t n_audit = extra.size();
  for (const RemoteCall& c : MmAttributeCalls()) extra.push_back(c);
  std::vector<long> attributes;
  CRYO_RETURN_IF_ERROR(DumpProcessCore(seized, *rs, facts.stat, facts.status, &out->core, may_trace, extra,
                                       &attributes)
                           .Prefixed("task state"));
  if (attributes.size() != extra.size())
    return Status::Error("internal: the remote attribute queries of pid " + std::to_string(pid) + " went missing");
  CRYO_RETURN_IF_ERROR(StoreSeccomp(seccomp, &out->core));
  // AIO contexts proven idle, their rings' positions recorded (mem/aio_ring.h).
  CRYO_RETURN_IF_ERROR(ProbeAioContexts(pid, seized.threads().size(), *rs, &facts.mm));
  if (seccomp.any()) features->insert("seccomp");
  image::MmFields* mmf = out->core.mutable_mm();
  MmAttributesFromResults(attributes.data() + n_audit, mmf->mutable_attrs());
  attributes.resize(n_audit);
  // While cryo's scratch memory is mapped (mlockall(MCL_FUTURE) locks it).
  CRYO_RETURN_IF_ERROR(
      ProbeLockFuture(pid, facts.vmas, rs->scratch(), rs->scratch_size(), mmf->mutable_attrs()).Prefixed("memory"));
  // At once, before anything reads its pages: the scratch memory unmapped,
  // every thread back in its own state, the stack bytes under cryo's signal
  // frames and the vDSO's bytes put back (remote_syscall.h).
  CRYO_RETURN_IF_ERROR(rs->Finish());
  // After the last remote call: a SIGSTOP may be dequeued until then.
  RecordJobControl(seized, &out->core);
  if (out->core.stop_signal()) features->insert("stopped");
  if (NeedsProcAttrsFeature(out->core)) features->insert("proc-attrs");
  audit::ClassifyRemoteResults(attributes, "pid " + std::to_string(pid), report);
  if (HasMmAttributes(mmf->attrs()))
    features->insert("mm-attributes");
  else
    mmf->clear_attrs();
  if (out->core.posix_timers_size()) features->insert("posix-timers");
  times->task += Now() - t1;
  return Status::Ok();
}

// Known before anything is read: the tree's pids, threads and the process
// groups the restore rebuilds (for state that names other processes), and
// which of its processes share an fd table or fs_struct with their parent
// (other sharing is refused, and so is sharing the restore plan could not
// rebuild: the plan is made here from what it needs).
Result<TableSharing> ScopeTree(SeizedTree& tree, pid_t root, bool kill_mode, DumpScope* scope) {
  scope->kill_mode = kill_mode;
  std::vector<TreeProcess> live;
  std::map<pid_t, image::ProcessCore> plan_cores;
  for (const auto& sp : tree.processes()) {
    TreeProcess tp;
    tp.pid = sp->pid();
    tp.ppid = tree.ParentOf(sp->pid());
    for (const SeizedTask& t : sp->threads()) {
      tp.tids.push_back(t.tid);
      scope->tids.insert(t.tid);
    }
    scope->pids.insert(tp.pid);
    CRYO_ASSIGN_OR_RETURN(proc::Stat st, proc::ReadStat(tp.pid));
    image::ProcessCore& c = plan_cores[tp.pid];
    c.set_pid(tp.pid);
    c.set_ppid(st.ppid);
    c.set_pgid(st.pgrp);
    c.set_sid(st.session);
    live.push_back(std::move(tp));
  }
  scope->all_tasks = scope->tids;
  for (const ZombieInfo& z : tree.zombies()) {
    plan_cores[z.pid] = ZombieCore(z);
    scope->all_tasks.insert(z.pid);
  }
  CRYO_ASSIGN_OR_RETURN(TableSharing sharing, FindSharedTables(live));
  for (pid_t p : sharing.files_with_parent) plan_cores[p].set_shares_files_with_parent(true);
  for (pid_t p : sharing.fs_with_parent) plan_cores[p].set_shares_fs_with_parent(true);
  std::map<pid_t, const image::ProcessCore*> cores;
  for (const auto& [p, c] : plan_cores) cores[p] = &c;
  const RestorePlan plan = PlanRestore(root, cores);
  CRYO_RETURN_IF_ERROR(CheckSharingPlan(plan, cores));
  for (pid_t p : scope->pids) {
    const pid_t g = cores.at(p)->pgid();
    auto leader = cores.find(g);
    auto ghost = plan.tasks.find(g);
    if ((leader != cores.end() && leader->second->pgid() == g) || (ghost != plan.tasks.end() && ghost->second.ghost()))
      scope->pgids.insert(g);
  }
  return sharing;
}
}  // namespace

image::ProcessCore ZombieCore(const ZombieInfo& z) {
  image::ProcessCore core;
  core.set_pid(z.pid);
  core.set_ppid(z.ppid);
  core.set_pgid(z.pgid);
  core.set_sid(z.sid);
  core.set_zombie(true);
  core.set_exit_status(z.exit_status);
  core.set_exit_signal(z.exit_signal);
  core.set_zombie_comm(z.comm);
  return core;
}

Status SeizeAndClassify(pid_t pid, bool shell_job, bool kill_mode, Classified* c) {
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  // A duplicate of each TCP socket is held until the dump ends: as many fds
  // as the hard limit allows (what is above it is refused by InspectTree).
  RaiseFdLimit();
  PrepareUdpQueueCount(pid);
  const double t0 = c->seize_start = Now();
  CRYO_ASSIGN_OR_RETURN(c->tree, SeizedTree::Seize(pid));
  c->seize_s = Now() - t0;
  LOG_DEBUG("tree of pid %d seized in %.3f ms: %zu processes, %zu zombies", pid, (Now() - t0) * 1e3,
            c->tree.processes().size(), c->tree.zombies().size());
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  CRYO_ASSIGN_OR_RETURN(c->sharing, ScopeTree(c->tree, pid, kill_mode, &c->scope));
  // Paths under the tree's /proc directories cannot be reopened before its
  // tasks exist; deleted working directories, roots and executables cannot
  // be reopened at all.
  CRYO_RETURN_IF_ERROR(paths::CheckProcessPaths(c->scope.pids, c->scope.all_tasks));
  // A tree in a network namespace of its own: its sockets are looked up
  // (sock_diag, /proc/net) from inside it.
  CRYO_ASSIGN_OR_RETURN(c->netns_visit, ns::NetnsVisit::Enter(pid));
  // Task state refused by /proc alone (audit sessions, oom_score_adj, cgroups).
  const double tp = Now();
  std::vector<pid_t> live;
  std::map<pid_t, pid_t> parent;
  std::vector<cgroup::ProcessTasks> tasks;
  for (const auto& sp : c->tree.processes()) {
    live.push_back(sp->pid());
    parent[sp->pid()] = c->tree.ParentOf(sp->pid());
    tasks.push_back({sp->pid(), {}});
    for (const SeizedTask& t : sp->threads()) tasks.back().tids.push_back(t.tid);
  }
  CRYO_RETURN_IF_ERROR(CheckProcessAttrs(live, parent));
  CRYO_ASSIGN_OR_RETURN(cgroup::CgroupRecords cgroups, cgroup::CollectCgroups(tasks));
  if (cgroup::MovesAnyProcess(cgroups)) c->features.insert("cgroups");
  CRYO_RETURN_IF_ERROR(cgroup::DumpCgroupSettings(cgroups, &c->namespaces, &c->features));
  LOG_DEBUG("audit sessions, oom_score_adj and cgroups checked in %.1f ms", (Now() - tp) * 1e3);
  // Restored or refused: what /proc shows first, before any remote call.
  CRYO_ASSIGN_OR_RETURN(c->inspection, InspectTree(c->tree, shell_job, &c->scope));
  const audit::Report& report = c->inspection.report;
  auto log_summary = [&report] {
    for (const std::string& line : report.Summary()) LOG_DEBUG("audit: %s", line.c_str());
  };
  if (report.refusals()) {
    log_summary();
    return report.ToStatus();
  }
  // The tree's own UTS and IPC namespaces, read whole (their SysV segments
  // with the shared memory below).
  const double tn = Now();
  CRYO_RETURN_IF_ERROR(ns::DumpNamespaces(live, c->scope.pids, &c->namespaces, &c->features));
  CRYO_RETURN_IF_ERROR(ns::DumpTimeNamespace(live, parent, pid, &c->namespaces, &c->features));
  LOG_DEBUG("namespaces dumped in %.1f ms", (Now() - tn) * 1e3);
  // Pipes, shared memory and unlinked files held outside the tree: refused
  // before the first file is written.
  const double to = Now();
  CRYO_RETURN_IF_ERROR(CheckSharedObjects(c->tree, c->inspection.facts, c->inspection.in_flight));
  LOG_DEBUG("pipes, shared memory and unlinked files checked in %.1f ms", (Now() - to) * 1e3);
  // Seccomp filters read and suspended before cryo's first remote call,
  // which a filter could refuse or punish.
  std::vector<SeccompState> seccomp(c->tree.processes().size());
  for (size_t i = 0; i < seccomp.size(); ++i) {
    SeizedProcess& sp = *c->tree.processes()[i];
    CRYO_ASSIGN_OR_RETURN(seccomp[i], DumpSeccomp(sp));
  }
  // TCP connections, read in repair mode with the tree held (dump/tcp_hold.h).
  CRYO_RETURN_IF_ERROR(ReadTcpConnections(c->tree, c->inspection.facts, seccomp, c->tcp));
  const double tc = Now();
  bool may_trace = false;
  c->procs.resize(c->tree.processes().size());
  for (size_t i = 0; i < c->procs.size(); ++i) {
    SeizedProcess& sp = *c->tree.processes()[i];
    CRYO_RETURN_IF_ERROR(CheckInterrupt());
    bool traces = false;
    CRYO_RETURN_IF_ERROR(CollectTaskState(sp, c->inspection.facts[i], seccomp[i], &c->procs[i], &c->features,
                                          &c->inspection.report, &c->times, &traces)
                             .Prefixed("pid " + std::to_string(sp.pid())));
    may_trace |= traces;
    for (image::CgroupPath& g : cgroups[sp.pid()]) *c->procs[i].core.add_cgroups() = std::move(g);
  }
  if (may_trace) {
    const double tt = Now();
    CRYO_RETURN_IF_ERROR(c->tree.CheckNoTracees());
    LOG_DEBUG("a process might trace: every task of the system looked at in %.1f ms", (Now() - tt) * 1e3);
  }
  LOG_DEBUG("task state of %zu processes collected in %.1f ms", c->procs.size(), (Now() - tc) * 1e3);
  c->audit_s = Now() - t0 - c->seize_s;
  log_summary();
  CRYO_RETURN_IF_ERROR(report.ToStatus());
  // Terminals, with their sessions (from the task state): every refusal
  // before the first file; the queued bytes are read and put back at once.
  std::vector<TtyProcess> tty_procs;
  for (size_t i = 0; i < c->procs.size(); ++i)
    tty_procs.push_back({c->tree.processes()[i]->pid(), &c->procs[i].core, &c->inspection.facts[i].fds});
  return DumpTtys(tty_procs, shell_job, &c->ttys, &c->features, c->scope.ext_tty).Prefixed("terminals");
}

Status CheckTree(pid_t pid, bool shell_job, bool all, bool udp_queue_unverified) {
  Classified c;
  // The describing of the fds peeks at UDP queues as the dump does.
  c.scope.udp_queue_unverified = udp_queue_unverified;
  // As for a dump in kill mode, the default (its refusals are a superset).
  // A tree in a mount namespace of its own is checked from inside it, as the
  // dump reads it: its mounts compared (refusals named) and its paths its own.
  Status s = ns::EnterTreeMountNs(pid, /*images_dir=*/"");
  if (s.ok()) s = SeizeAndClassify(pid, shell_job, /*kill_mode=*/true, &c);
  const audit::Report& r = c.inspection.report;
  for (const std::string& line : all ? r.AllLines() : r.Summary()) std::printf("%s\n", line.c_str());
  const std::vector<std::string> refused = r.RefusalLines();
  if (s.ok()) {
    std::printf("pid %d: every item is restored, inherited from cryo or not state: the tree can be checkpointed\n", pid);
    return Status::Ok();
  }
  if (refused.empty()) return s;  // not a refusal: an error
  std::printf("refused:\n");
  for (const std::string& line : refused) std::printf("  %s\n", line.c_str());
  std::fflush(stdout);
  return Status::Error("the tree of pid " + std::to_string(pid) + " cannot be checkpointed: " +
                       std::to_string(refused.size()) + (refused.size() == 1 ? " refusal" : " refusals"));
}

}  // namespace cryo
