// The network namespace a socket belongs to: the one its creator was in
// when it made it (socket(2), network_namespaces(7)), whatever namespace the
// process lives in since. A restore makes every socket of the tree in the
// tree's namespace (cryo's, or the fresh one of ns/netns.h), so a socket of
// another namespace (made before an unshare(CLONE_NEWNET), or after a
// setns(2) and back, or passed in) would come back in the wrong one: it is
// refused by name at dump.
#pragma once

#include "base/status.h"
#include "files/fd_kind.h"

namespace cryo {

// Refuses the socket `src` if its namespace (ioctl SIOCGSKNS on cryo's
// duplicate, sock_ioctl in net/socket.c) is not the one its process lives
// in (/proc/PID/ns/net).
Status CheckSocketNetns(const FdSource& src);

}  // namespace cryo
