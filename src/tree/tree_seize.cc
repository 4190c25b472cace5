#include "tree/tree_seize.h"

#include <signal.h>

#include <algorithm>
#include <set>

#include "proc/proc.h"

namespace cryo {

namespace {

Result<std::vector<pid_t>> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  CRYO_ASSIGN_OR_RETURN(std::vector<pid_t> tids, proc::ListThreads(pid));
  for (pid_t tid : tids) {
    auto c = proc::ReadChildren(pid, tid);
    if (!c.ok()) continue;  // the thread exited
    out.insert(out.end(), c->begin(), c->end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

pid_t SeizedTree::ParentOf(pid_t pid) const {
  for (const auto& [p, pp] : parent_)
    if (p == pid) return pp;
  return 0;
}

Result<SeizedTree> SeizedTree::Seize(pid_t root) {
  SeizedTree tree;
  CRYO_ASSIGN_OR_RETURN(auto rp, SeizedProcess::Seize(root));
  tree.processes_.push_back(std::move(rp));
  tree.parent_.emplace_back(root, 0);
  std::set<pid_t> known = {root};
  // Breadth-first: a process is seized before its children are listed, so
  // its list cannot grow behind our back.
  for (size_t i = 0; i < tree.processes_.size(); ++i) {
    const pid_t parent = tree.processes_[i]->pid();
    CRYO_ASSIGN_OR_RETURN(std::vector<pid_t> children, ChildrenOf(parent));
    for (pid_t child : children) {
      if (!known.insert(child).second) continue;
      CRYO_ASSIGN_OR_RETURN(proc::Stat st, proc::ReadStat(child));
      if (st.state == 'Z') {
        tree.zombies_.push_back({child, parent, st.pgrp, st.session, st.exit_code, st.exit_signal, st.comm});
        tree.parent_.emplace_back(child, parent);
        continue;
      }
      auto cp = SeizedProcess::Seize(child);
      if (!cp.ok()) {
        // Exited (or died into a zombie) meanwhile: look again.
        auto again = proc::ReadStat(child);
        if (!again.ok()) continue;
        if (again->state == 'Z') {
          tree.zombies_.push_back({child, parent, again->pgrp, again->session, again->exit_code, again->exit_signal, again->comm});
          tree.parent_.emplace_back(child, parent);
          continue;
        }
        return cp.status().Prefixed("child " + std::to_string(child) + " of pid " + std::to_string(parent));
      }
      tree.processes_.push_back(std::move(*cp));
      tree.parent_.emplace_back(child, parent);
    }
  }
  return tree;
}

Status SeizedTree::DetachAll() {
  Status first;
  for (auto& p : processes_) {
    Status s = p->Detach();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

Status SeizedTree::KillAll() {
  // SIGKILL everything first, so no process sees another die and reacts.
  for (auto& p : processes_) ::kill(p->pid(), SIGKILL);
  Status first;
  for (auto& p : processes_) {
    Status s = p->Kill();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace cryo
