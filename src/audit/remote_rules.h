// Per-process attributes no /proc file shows, read with a system call run in
// the seized process: each returns its value in rax, no memory is touched.
// They run in the batch of remote calls that collects the task state
// (tree/task_dump.h), before any file of the image is written. Each is
// compared with the same call in cryo: a restored process is a fork of cryo.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "audit/item.h"
#include "audit/rules.h"
#include "base/status.h"

#include "inject/remote_syscall.h"

namespace cryo::audit {

struct RemoteQuery {
  std::string_view key;  // e.g. "PR_GET_MDWE"
  long nr;
  unsigned long args[3];
  std::string_view what;  // refused: completes "<subject> ..." (the value is appended)
  int tolerated_errno;    // an error of the process's call that says nothing is set (0: none)
  std::string_view tolerated_why;
  std::string_view restored;  // set: cryo restores whatever value it reads (this says how)
};

const std::vector<RemoteQuery>& RemoteQueries();

// The verdict for one query: `target` and `mine` are raw results (-errno on failure).
Decision DecideRemote(const RemoteQuery& q, long target, long mine);

// The queries as remote calls, in the order of RemoteQueries().
std::vector<RemoteCall> RemoteQueryCalls();
// Classifies the results of RemoteQueryCalls() in a process (raw, -errno on
// failure) against the same calls in cryo.
void ClassifyRemoteResults(const std::vector<long>& results, const std::string& subject, Report* report);

}  // namespace cryo::audit
