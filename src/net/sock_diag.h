// One NETLINK_SOCK_DIAG exchange: a request about one socket (no dump) and
// its answer, for unix_diag.cc and tcp_diag.cc.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

// Sends `request` (a struct nlmsghdr and its payload, `len` bytes) and reads
// the answer into *answer (its size is the room given); returns the answer's
// length. Bounded: 1 s for the answer. `what` names the query in errors.
Result<size_t> SockDiagQuery(const void* request, size_t len, std::vector<char>* answer, const std::string& what);

}  // namespace cryo
