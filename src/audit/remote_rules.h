// Per-process attributes no /proc file shows, read with a system call run in
// the seized process (inject/remote_syscall.h): registers only, no memory of
// the process is touched (each call returns its value in rax). Each is
// compared with the same call in cryo: a restored process is a fork of cryo.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "audit/item.h"
#include "audit/rules.h"
#include "base/status.h"

namespace cryo {
class RemoteSyscaller;
}

namespace cryo::audit {

struct RemoteQuery {
  std::string_view key;  // e.g. "PR_GET_MDWE"
  long nr;
  unsigned long args[3];
  std::string_view what;  // refused: completes "<subject> ..." (the value is appended)
  int tolerated_errno;    // an error of the process's call that says nothing is set (0: none)
  std::string_view tolerated_why;
};

const std::vector<RemoteQuery>& RemoteQueries();

// The verdict for one query: `target` and `mine` are raw results (-errno on failure).
Decision DecideRemote(const RemoteQuery& q, long target, long mine);

// Runs every query in the process (`rs` prepared) and in cryo.
Status ClassifyRemote(RemoteSyscaller& rs, const std::string& subject, Report* report);

}  // namespace cryo::audit
