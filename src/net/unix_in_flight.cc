#include "net/unix_in_flight.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <map>

#include "files/fd_kind.h"
#include "files/fd_table.h"
#include "image/in_flight.h"

namespace cryo {

pid_t InFlightFiles::pid() const { return ::getpid(); }

Status InFlightFiles::Add(image::UnixSocket* u, std::vector<QueuedFds> queued, const std::set<uint64_t>& tree_unix_sockets,
                          const std::string& what, const DumpScope* scope, std::set<std::string>* features) {
  UniqueFd self(static_cast<int>(syscall(SYS_pidfd_open, ::getpid(), 0)));
  if (!self.valid()) return Status::FromErrno("pidfd_open of cryo itself");
  std::set<std::string> scratch;
  if (!features) features = &scratch;
  for (QueuedFds& q : queued) {
    image::UnixInFlight* rec = u->add_in_flight();
    rec->set_message(static_cast<uint32_t>(q.message));
    for (UniqueFd& fd : q.fds) {
      const std::string which = what + ": a file descriptor in flight in its queue (message " +
                                std::to_string(q.message) + ", sent with SCM_RIGHTS)";
      FdSource src;
      src.pid = ::getpid();
      src.fd = fd.get();
      src.pidfd = self.get();
      src.scope = scope;
      if (scope) src.tree = &scope->all_tasks;
      Status st = DescribeFd(src, &table_, features);
      if (!st.ok()) return st.Prefixed(which);
      image::Fd& f = *table_.mutable_fds()->rbegin();
      f.set_cloexec(false);  // the receiver's choice (MSG_CMSG_CLOEXEC)
      const std::string target = DescribeFdTarget(src.link);
      if (!image::SendableInFlight(f.kind()))
        return Status::Error(which + " is " + target + ", which cryo cannot send again yet (let the program receive "
                                                       "it before the dump)");
      if (f.kind() == image::FD_UNIX_SOCKET && !tree_unix_sockets.count(f.unix_socket().ino()))
        return Status::Error(which + " is a UNIX socket (" + src.link +
                             ") that no process of the tree holds, only queues: cryo cannot restore a socket "
                             "that exists only in flight yet (let the program receive it before the dump)");
      rec->add_fds()->set_fd(f.fd());
      fds_.push_back(std::move(fd));
    }
  }
  if (!queued.empty()) features->insert("unix-scm-rights");
  return Status::Ok();
}

void InFlightFiles::Complete(const std::vector<image::FdTable*>& tables) const {
  std::map<int, const image::Fd*> by_fd;
  for (const image::Fd& f : table_.fds()) by_fd[f.fd()] = &f;
  for (image::FdTable* t : tables)
    for (image::Fd& f : *t->mutable_fds()) {
      if (f.kind() != image::FD_UNIX_SOCKET) continue;
      for (image::UnixInFlight& m : *f.mutable_unix_socket()->mutable_in_flight())
        for (image::Fd& g : *m.mutable_fds()) {
          auto it = by_fd.find(g.fd());
          if (it != by_fd.end()) g = *it->second;
        }
    }
}

}  // namespace cryo
