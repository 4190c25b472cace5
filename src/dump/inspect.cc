#include "dump/inspect.h"

#include <cstdio>

#include "audit/audit.h"
#include "base/clock.h"
#include "base/log.h"
#include "seize/seize.h"

namespace cryo {

Result<Inspection> InspectTree(SeizedTree& tree, bool shell_job) {
  const double t0 = Now();
  Inspection in;
  audit::TreeShown shown;
  for (const auto& sp : tree.processes()) {
    CRYO_ASSIGN_OR_RETURN(ProcessFacts f, DescribeProcess(sp->pid(), shell_job));
    in.facts.push_back(std::move(f));
  }
  for (size_t i = 0; i < in.facts.size(); ++i) {
    SeizedProcess& sp = *tree.processes()[i];
    const ProcessFacts& f = in.facts[i];
    audit::ProcessShown p;
    p.pid = f.pid;
    for (const SeizedTask& t : sp.threads()) p.tids.push_back(t.tid);
    p.regs = &sp.leader().regs;
    p.status = f.status_text;
    p.stat = f.stat_text;
    p.smaps = f.smaps_text;
    p.vmas = &f.vmas;
    p.fds = &f.fds;
    p.fd_infos = &f.fd_infos;
    if (!f.refusal.ok()) p.refusal = f.refusal.ToString();
    shown.processes.push_back(std::move(p));
  }
  for (const ZombieInfo& z : tree.zombies()) shown.zombies.push_back(z.pid);
  if (!in.facts.empty()) shown.root_parent = in.facts[0].stat.ppid;
  const double t1 = Now();
  CRYO_ASSIGN_OR_RETURN(audit::Baseline cryo, audit::Baseline::OfCryo());
  CRYO_ASSIGN_OR_RETURN(in.report, audit::AuditTree(shown, cryo));
  for (ProcessFacts& f : in.facts) {
    // Read for the audit only.
    f.stat_text = std::string();
    f.status_text = std::string();
    f.smaps_text = std::string();
    f.fd_infos = {};
  }
  LOG_DEBUG("tree described in %.1f ms and audited in %.1f ms: %zu refused", (t1 - t0) * 1e3, (Now() - t1) * 1e3,
            in.report.refusals());
  for (const std::string& line : in.report.Summary()) LOG_DEBUG("audit: %s", line.c_str());
  return in;
}

Status CheckTree(pid_t pid, bool shell_job, bool all) {
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  CRYO_ASSIGN_OR_RETURN(SeizedTree tree, SeizedTree::Seize(pid));
  Result<Inspection> in = InspectTree(tree, shell_job);
  CRYO_RETURN_IF_ERROR(tree.DetachAll());
  if (!in.ok()) return in.status();
  const audit::Report& r = in->report;
  for (const std::string& line : all ? r.AllLines() : r.Summary()) std::printf("%s\n", line.c_str());
  const std::vector<std::string> refused = r.RefusalLines();
  if (refused.empty()) {
    std::printf("pid %d: every item is restored, inherited from cryo or not state: the tree can be checkpointed\n", pid);
    return Status::Ok();
  }
  std::printf("refused:\n");
  for (const std::string& line : refused) std::printf("  %s\n", line.c_str());
  std::fflush(stdout);
  return Status::Error("the tree of pid " + std::to_string(pid) + " cannot be checkpointed: " +
                       std::to_string(refused.size()) + (refused.size() == 1 ? " refusal" : " refusals"));
}

}  // namespace cryo
