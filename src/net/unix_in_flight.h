// File descriptors in flight in the tree's UNIX socket queues (sent with
// SCM_RIGHTS, not yet received), at dump. Cryo peeks at each queue on its own
// duplicate of the socket (pidfd_getfd): a peek installs the fds it returns
// in the process that peeks (af_unix.c unix_peek_fds, scm_fp_dup), so cryo is
// the receiver, never the target. Cryo holds those fds until the image is
// written and describes them like the fds of a process of its own pid, in a
// table of their own: file ids shared with the tree's fds, pipes and memfds
// are found with the tree's (dump.cc). At restore, the fd pool opens them like
// any description and UnixSocketSet sends them again with their messages.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "net/unix_queue.h"

namespace cryo {

struct DumpScope;

class InFlightFiles {
 public:
  // Takes the fds `queued` in the queue of `u` (`what`, for messages) and
  // describes them; refuses, by name, a kind cryo cannot send again (a socket
  // only in flight, a listener, a TCP connection, ...). `tree_unix_sockets`:
  // the inodes of the UNIX sockets the tree holds.
  Status Add(image::UnixSocket* u, std::vector<QueuedFds> queued, const std::set<uint64_t>& tree_unix_sockets,
             const std::string& what, const DumpScope* scope, std::set<std::string>* features);
  bool empty() const { return table_.fds().empty(); }
  // Cryo's own: the fd numbers of table() are its fds.
  pid_t pid() const;
  image::FdTable* table() { return &table_; }
  // Once file ids, pipes and shared memory objects are known: the in-flight
  // records of the sockets of `tables` (fd numbers only, until now) get the
  // full records of table().
  void Complete(const std::vector<image::FdTable*>& tables) const;

 private:
  std::vector<UniqueFd> fds_;
  image::FdTable table_;
};

}  // namespace cryo
