#include "tree/tree_seize.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <set>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/unique_fd.h"
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

// TracerPid of /proc/PID/task/TID/status, from its first lines only (the
// scan below reads it for every task of the system); 0 if gone.
pid_t TracerOf(pid_t pid, pid_t tid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/status", static_cast<int>(pid), static_cast<int>(tid));
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return 0;
  char buf[512];
  const ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* at = std::strstr(buf, "\nTracerPid:");
  return at ? static_cast<pid_t>(std::strtol(at + 11, nullptr, 10)) : 0;
}

}  // namespace

// A process of the tree that traces a task (its tracee runs on, or waits in
// a ptrace stop for its tracer): the relationship would be lost by a kill-mode
// dump and cannot be restored. (A traced process of the tree is refused when
// it is seized, naming its tracer.)
Status SeizedTree::CheckNoTracees() const {
  std::map<pid_t, pid_t> tids;  // tid -> its process
  for (const auto& p : processes_)
    for (const SeizedTask& t : p->threads()) tids[t.tid] = p->pid();
  return proc::ForEachTask([&](pid_t pid, pid_t tid) {
    const pid_t tracer = TracerOf(pid, tid);
    auto it = tids.find(tracer);
    if (!tracer || it == tids.end()) return Status::Ok();
    auto st = proc::ReadStatus(tid);
    return Status::Error("pid " + std::to_string(it->second) + " traces " +
                         (tid == pid ? "pid " + std::to_string(pid) : "task " + std::to_string(tid) + " of pid " + std::to_string(pid)) +
                         " (" + (st.ok() ? st->name : "?") + "); cryo cannot restore a ptrace relationship: detach it first");
  });
}

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
