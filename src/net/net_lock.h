// The network lock: while a TCP connection is checkpointed and until it is
// restored, its packets are dropped by an nftables table of cryo's own
// (family inet, named cryo-lock-PID-STARTTIME-N), so that neither end sees a
// reset or an acknowledgement the other end's image does not know about.
// The table is made by the dump (net/tcp_session.h) and removed when the
// dump fails or leaves the tree running; after a dump in kill mode it stays,
// named in the image's inventory (net_lock), until the restore (or
// `cryo unlock`) removes it. nft(8) is run as a child process (~15 ms a
// run), once for all the connections of a dump: the table's rules drop the
// 4-tuples of two sets (IPv4, IPv6), filled by the same script.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

// Packets cryo itself sends with this SO_MARK pass every lock: the FIN a
// restore hands a half-closed connection from its peer (net/tcp_fin.h).
inline constexpr uint32_t kNetLockPassMark = 0x6372796f;  // "cryo"

// The prefix of every lock table's name.
inline constexpr char kNetLockPrefix[] = "cryo-lock";

// Whether `name` is a name cryo gives a lock table (prefix, then [A-Za-z0-9-]).
bool IsNetLockName(const std::string& name);

// One end of a connection: a struct sockaddr_in or sockaddr_in6 as text; a
// v4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries
// (what goes over the wire).
struct InetEndpoint {
  bool ipv4 = false;
  std::string ip;  // "" if `addr` is neither
  uint16_t port = 0;
};
InetEndpoint ParseInetEndpoint(const std::string& addr);

// A new table name for a lock of this process.
std::string NewNetLockName();

// One connection's two ends: struct sockaddr_in or sockaddr_in6 each (a
// v4-mapped IPv6 address is locked as the IPv4 address it carries).
struct LockedConnection {
  std::string local, peer;
};

// The nft(8) commands that add the table, its chains, sets and drop rules,
// and the 4-tuples of `conns` (both directions) to the sets (exposed for
// tests).
std::string NetLockScript(const std::string& name, const std::vector<LockedConnection>& conns);

// Adds the table (if `create`) and the 4-tuples of `conns` to its sets, in
// one nft run: every packet of `conns` is dropped, in both directions.
Status AddNetLock(const std::string& name, const std::vector<LockedConnection>& conns, bool create);

// A dump's table carries a marker chain ("dumping") until the dump hands it
// over to its image (kill mode): a table with the marker whose creator is
// gone is left by a dump that died (kill -9), and is stale.
Status MarkNetLockKept(const std::string& name);
// Removes the stale tables of dead dumps; their names in *removed.
Status RemoveStaleNetLocks(std::vector<std::string>* removed);

// Removes the table (one nft run); Ok if there is none of that name.
Status RemoveNetLock(const std::string& name);

// Whether the table exists.
Result<bool> NetLockExists(const std::string& name);

// Runs nft(8) with `script` on its standard input (bounded wait); its error
// output in the status.
Status RunNft(const std::string& script);

}  // namespace cryo
