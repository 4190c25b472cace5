// Connections waiting in a UNIX listener's accept queue (connected, not yet
// accepted). The server end of each (the "embryo") has no inode and no fd
// until accept(2); sock_diag shows the listener's queue as the inodes of the
// client ends (UNIX_DIAG_ICONS), in accept order. A restore connects each
// client end again to its listener, in that order, right after the listener
// listens: the accept queue is the same, and the server accepts them as
// before. What an embryo holds cannot be read without accepting it (which
// would take it from the original), so a client that has sent anything to its
// pending connection is refused, as is a client closed since (its embryo may
// hold data, and nothing can connect again in its place).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "net/unix_diag.h"

namespace cryo {

// Dump, listener: records `diag`'s accept queue in `l` (pending_clients), or
// refuses what cannot be connected again. `what` names the listener.
Status DumpPendingConnections(const UnixSocketDiag& diag, image::ListenSocket* l, const std::string& what);

// Dump, across the tree: client inode -> the description of the listener
// whose accept queue holds its connection.
std::map<uint64_t, std::string> PendingClientsOf(const std::vector<std::pair<pid_t, image::FdTable*>>& tables);

// Dump: refuses a pending client end `fd` that sent anything to its
// connection (SIOCOUTQ: the bytes queued on the embryo, unreadable).
Status CheckPendingClientSentNothing(int fd, const std::string& what);

// Runs `fn` under effective ids `uid`, `gid` (and no supplementary groups
// when not root) of this thread only (raw system calls: glibc's would change
// every thread's), then back to the caller's; the saved uid (root) allows it
// (capabilities(7), "Effect of user ID changes").
Status WithEffectiveIds(uid_t uid, gid_t gid, const std::function<Status()>& fn, const std::string& what);

// Restore, in cryo before the tree is cloned: the pool fd of a pending client.
void NotePendingClient(const image::UnixSocket& u, int pool_fd);

// Restore, in the helper that made `l` listen: connects its pending clients
// (from the pool, inherited across fork) in accept order, each under its
// socket's owner ids (what the server sees as SO_PEERCRED), then shuts them
// down as dumped.
Status ConnectPendingClients(const image::ListenSocket& l, const std::string& what);

}  // namespace cryo
