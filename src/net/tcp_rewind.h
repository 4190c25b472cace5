// TCP connections whose peer is outside the tree, at restore.
//
// The peer outside is not rewound with the tree: a connection can be restored
// from the image's sequence numbers only while the peer's end is still where
// the dump left it, that is while the dump's network lock (net_lock.h) holds
// it: a dump in kill mode, restored the first time. Once the lock is gone
// (restored already, `cryo unlock`, a failed restore), or when there never
// was one (`dump --leave-running`: the original went on with the
// connection), the peer has acknowledged bytes the image does not hold or
// reset the connection; the image's end would be a connection neither the
// program nor the peer can use (the peer's kernel drops its segments as old,
// the restored end waits for bytes the peer sent to the original). Such a
// restore is refused by name, before anything is made, unless --tcp-close
// (the connection comes back reset by its peer, which is right).
// A connection with both ends in the image is rewound whole and restores any
// number of times.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo {

// The fd tables of a tree's processes, by pid.
using TreeFdTables = std::vector<std::pair<int, const image::FdTable*>>;

// The connections of `tables` whose other end is not in them, named
// ("pid 12 fd 4: TCP 127.0.0.1:8002 <-> 127.0.0.1:35550"), each socket once.
std::vector<std::string> ConnectionsWithPeerOutside(const TreeFdTables& tables);
std::vector<std::string> ConnectionsWithPeerOutside(const image::LoadedImage& img);

// A dump --leave-running: says (warning) which connections the image
// restores only with --tcp-close.
void WarnPeersNotRewound(const TreeFdTables& tables);

// Refuses the restore of an image holding a connection whose peer is outside
// the tree when no network lock holds that peer's end any more (see above);
// Ok with `tcp_close`. Runs nft(8) once when the image has such connections
// and a lock. `held_by_source`: the restore of a migration, whose source
// holds the image's lock until this restore is done (tcp_migrate.h).
Status CheckOutsidePeersHeld(const image::LoadedImage& img, bool tcp_close, bool held_by_source = false);

// A tree of its own network namespace (kill mode): the dump's lock lived in
// that namespace and went with it when the tree was killed. Nothing is left
// there to answer the peer: its veth pair is gone, so the peer's packets find
// no route (soft errors, retransmitted with back-off), never a reset. The
// restore makes the lock again in the fresh namespace before any link is up
// (FreshNetnsLockScript). What the lock table stood for besides, "this image
// has not been restored yet" (a second restore is refused: the peer went on
// with the first), is kept by a *token*: an empty table of the lock's name in
// cryo's own namespace, made after the kill when the image has a connection
// to a peer outside the tree. The token is what CheckOutsidePeersHeld finds;
// `cryo unlock DIR` removes it like any lock; the restore takes it
// (TakeNetnsLockToken) before it makes anything, so that a restore that
// fails or is killed leaves the image refused, as one that removed its lock.
// A dump killed between the kill and the token leaves none: refused too.
// `home_netns`: an fd of cryo's own network namespace while its main thread
// visits the tree's (ns/ns_thread.h HomeNetFd), or -1.
Status KeepNetnsLockToken(const std::string& lock, const TreeFdTables& tables, int home_netns);
// The restore of such an image, in cryo's own namespace: the token removed
// (one nft run; nothing for other images).
Status TakeNetnsLockToken(const image::LoadedImage& img);

}  // namespace cryo
