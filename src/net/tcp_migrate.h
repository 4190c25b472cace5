// TCP connections that move to another host (`cryo migrate` into
// `cryo page-server --restore`), with their address following them as a
// floating IP does.
//
// The lock: the source's dump locks the connections in its network namespace
// (net_lock.h) and, in kill mode, keeps that table after the kill; the
// migration protocol tells the receiver that the source still holds it, and
// the source removes it only once the receiver said RESTORED. The receiver
// makes the same table in its own namespace before any socket exists
// (HoldLockForMigration), so that between the making of the sockets and the
// end of repair mode no packet reaches them there either; the restore
// removes it there at its end as usual. A peer whose packets still reach
// the source meanwhile finds them dropped by the source's lock: never a
// reset.
//
// The address: the receiving host need not have the connection's local
// address yet when the sockets are made. bind(2) of an address that is not
// local fails (EADDRNOTAVAIL) unless IP_FREEBIND or IP_TRANSPARENT, and
// connect(2), even in repair mode, routes from the bound address, which
// fails (ENETUNREACH) unless IP_TRANSPARENT (FLOWI_FLAG_ANYSRC,
// net/ipv4/route.c ip_route_output_key_hash_rcu; ip(7)); so such a socket is
// bound and connected with IP_TRANSPARENT (IPV6_TRANSPARENT) set for those two
// calls only (cryo runs as root: CAP_NET_ADMIN); a listener bound to such an
// address too (listen_socket.cc). The address must be here by
// the time the tree resumes: `page-server --before-resume CMD` runs just
// before that (CMD moves the address), and a connection whose address is
// still not local then fails the restore by name, before anything runs
// (once the source's lock is gone, a peer's packets would reach a host
// without the socket and be reset).
#pragma once

#include <string>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo {

// A migration's restore (page-server --restore): sockets may be bound to an
// address that is not local yet.
void SetTcpNonlocalBindOnRestore(bool on);
bool TcpNonlocalBindOnRestore();

// Binds socket `fd` (repair mode, `family`) to `local`, an address not on
// this host, with IP_TRANSPARENT on; returns the option's value from before.
Result<int> BindNonlocal(int fd, int family, const std::string& local, const std::string& what);
// Once connected: IP_TRANSPARENT back to `before`.
Status EndNonlocal(int fd, int family, int before, const std::string& what);

// Whether the address of `local` (port aside) is on this host now; an error
// naming the connection and the address otherwise.
Status CheckAddressHere(const std::string& local, const std::string& what);

// Before the receiver acknowledges a migrated image (the source tree still
// held): each TCP connection's local address must be on this host, unless
// a --before-resume command will move it here (`hook`). Refused by name
// otherwise (the tree of a namespace of its own brings its addresses).
Status CheckMigratedAddresses(const image::LoadedImage& img, bool hook);

// The receiving side of a migration: the image's lock made in cryo's network
// namespace unless it exists here already (a migration within one namespace)
// or the tree has a namespace of its own (FreshNetnsLockScript makes it
// there). One nft run; the table carries no "dumping" marker (it is no
// dump's: another dump here must not take it for a dead one's).
Status HoldLockForMigration(const image::LoadedImage& img);

}  // namespace cryo
