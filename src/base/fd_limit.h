// cryo's own open-file limit (RLIMIT_NOFILE). A dump holds a duplicate of
// each TCP socket of the tree until it ends, and a restore opens every open
// file description of the image at once (the fd pool) above the image's
// highest fd number: with many sockets that is more than the usual soft
// limit. The soft limit may be raised up to the hard one without
// CAP_SYS_RESOURCE (getrlimit(2)); what does not fit below the hard limit is
// refused by name before anything is done, saying which limit to raise.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace cryo {

// Raises cryo's soft RLIMIT_NOFILE to its hard limit (children cryo starts
// inherit it; the restore sets each restored process's own limits). Returns
// the soft limit now in effect.
uint64_t RaiseFdLimit();

// Ok if `need` fds fit below cryo's hard RLIMIT_NOFILE; otherwise an error
// naming `what` needs them and the limit to raise.
Status CheckFdLimit(uint64_t need, const std::string& what);

// An error for a call that failed with EMFILE or ENFILE (errno) while cryo
// held many fds: errno's text, then which limit to raise.
Status FdLimitError(const std::string& what);

}  // namespace cryo
