// Runs nft(8) (nftables) as a child process: the one runner of cryo's
// network locks (net/net_lock.h), their removal by the restore's janitor
// (base/janitor.h) and by the dump's guardian (net/tcp_guardian.h).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

// Runs `nft ARGS...` with `input` on its standard input, bounded (20 s, then
// killed); its exit status, and what it wrote (stdout and stderr, the first
// 64 KiB) in *output.
Result<int> RunNftCommand(const std::vector<std::string>& args, const std::string& input, std::string* output);

}  // namespace cryo
