#include "files/fd_owner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/unique_fd.h"

namespace cryo {

namespace {

std::string OwnerName(const image::FdOwner& o) {
  switch (o.type()) {
    case F_OWNER_TID:
      return "thread " + std::to_string(o.pid());
    case F_OWNER_PGRP:
      return "process group " + std::to_string(o.pid());
    default:
      return NamePid(o.pid());
  }
}

}  // namespace

Status DumpFdOwner(const FdSource& src, image::Fd* out, proc::FdInfo* shown) {
  const int fd = src.Dup();  // shared with the fd's handler (FdSource::Dup)
  if (fd < 0) return Status::FromErrno("pidfd_getfd of " + src.what());
  // O_PATH: no owner or signal can be set (check_fcntl_cmd, fs/fcntl.c).
  if (src.info.flags & O_PATH) return Status::Ok();
  struct f_owner_ex owner = {};
  if (::fcntl(fd, F_GETOWN_EX, &owner) != 0) return Status::FromErrno("F_GETOWN_EX on " + src.what());
  const int sig = ::fcntl(fd, F_GETSIG);
  if (sig < 0) return Status::FromErrno("F_GETSIG on " + src.what());
  if (shown) {
    shown->owner_read = true;
    shown->owner_type = owner.type;
    shown->owner_pid = owner.pid;
    shown->owner_sig = sig;
  }
  if (sig) out->set_signal(sig);
  if (owner.pid <= 0) return Status::Ok();
  image::FdOwner o;
  o.set_type(owner.type);
  o.set_pid(owner.pid);
  if (src.scope) {
    const DumpScope& s = *src.scope;
    const bool inside = owner.type == F_OWNER_TID    ? s.tids.count(owner.pid) > 0
                        : owner.type == F_OWNER_PGRP ? s.pgids.count(owner.pid) > 0
                                                     : s.tids.count(owner.pid) > 0;
    if (!inside)
      return Status::Error(src.what() + " (" + src.link + ") sends SIGIO/SIGURG to " + OwnerName(o) +
                           (owner.type == F_OWNER_PGRP ? ", a group the restore would not rebuild (its leader is"
                                                         " outside the tree)"
                                                       : ", outside the tree") +
                           " (fcntl F_SETOWN): a restored owner could name another process by then; not restored "
                           "(dump that process with the tree, or clear the owner with F_SETOWN 0)");
  }
  *out->mutable_owner() = o;
  return Status::Ok();
}

Status CheckOwnerGroups(const RestorePlan& plan, const std::map<pid_t, const image::ProcessCore*>& cores,
                        const std::map<pid_t, const image::FdTable*>& tables) {
  for (const auto& [pid, table] : tables)
    for (const image::Fd& f : table->fds()) {
      if (!f.has_owner() || f.owner().type() != F_OWNER_PGRP) continue;
      const pid_t pgid = f.owner().pid();
      auto leader = cores.find(pgid);
      auto ghost = plan.tasks.find(pgid);
      if ((leader != cores.end() && leader->second->pgid() == pgid) ||
          (ghost != plan.tasks.end() && ghost->second.ghost()))
        continue;
      return Status::Error("pid " + std::to_string(pid) + " fd " + std::to_string(f.fd()) + " sends SIGIO/SIGURG to " +
                           OwnerName(f.owner()) + ", which the restore cannot rebuild (its leader is outside the "
                           "image): not restored");
    }
  return Status::Ok();
}

Status CheckFdOwners(const image::LoadedImage& img) {
  std::set<pid_t> tids, pgids;
  for (const auto& [pid, p] : img.processes) {
    pgids.insert(p.core.pgid());
    for (const image::TaskCore& t : p.core.threads()) tids.insert(t.tid());
  }
  const auto& features = img.inventory.features();
  const bool announced = std::find(features.begin(), features.end(), "fd-owner") != features.end();
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds()) {
      if (!f.has_owner() && !f.signal()) continue;
      const std::string what = image::FdsName(pid) + ": fd " + std::to_string(f.fd());
      if (!announced) return Status::Error(what + " has an owner or signal, but the image lacks the feature fd-owner (corrupted)");
      if (f.signal() < 0 || f.signal() > SIGRTMAX) return Status::Error(what + ": invalid signal " + std::to_string(f.signal()) + " (corrupted)");
      if (!f.has_owner()) continue;
      const image::FdOwner& o = f.owner();
      const bool known = o.type() == F_OWNER_PGRP ? pgids.count(o.pid()) > 0
                         : (o.type() == F_OWNER_TID || o.type() == F_OWNER_PID) && tids.count(o.pid()) > 0;
      if (!known) return Status::Error(what + ": its owner " + OwnerName(o) + " is not in the image (corrupted)");
    }
  return Status::Ok();
}

Status RestoreAsync(const image::Fd& f) {
  if (!(f.flags() & O_ASYNC)) return Status::Ok();
  const int flags = ::fcntl(f.fd(), F_GETFL);
  // Only a change of the flag calls the file's fasync (setfl()): off, then on.
  if (flags < 0 || ::fcntl(f.fd(), F_SETFL, flags & ~O_ASYNC) != 0 || ::fcntl(f.fd(), F_SETFL, flags | O_ASYNC) != 0)
    return Status::FromErrno("O_ASYNC on fd " + std::to_string(f.fd()));
  return Status::Ok();
}

Status RestoreFdOwners(pid_t pid, const image::FdTable& table) {
  UniqueFd pidfd;
  for (const image::Fd& f : table.fds()) {
    if (!f.has_owner() && !f.signal()) continue;
    const std::string what = "pid " + std::to_string(pid) + " fd " + std::to_string(f.fd());
    if (!pidfd.valid()) {
      pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
      if (!pidfd.valid()) return Status::FromErrno("pidfd_open pid " + std::to_string(pid));
    }
    UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), f.fd(), 0)));
    if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + what);
    if (::fcntl(fd.get(), F_SETSIG, f.signal()) != 0)
      return Status::FromErrno("F_SETSIG " + std::to_string(f.signal()) + " on " + what);
    if (f.has_owner()) {
      struct f_owner_ex o = {static_cast<__pid_type>(f.owner().type()), f.owner().pid()};
      if (::fcntl(fd.get(), F_SETOWN_EX, &o) != 0)
        return Status::FromErrno("F_SETOWN_EX to " + OwnerName(f.owner()) + " on " + what);
    }
  }
  return Status::Ok();
}

}  // namespace cryo
