// What the threads of one traced process share while cryo runs code in it
// (remote_syscall.cc, remote_gate.cc): private to src/inject.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "inject/injected_code.h"
#include "proc/proc.h"

namespace cryo {

class RemoteSyscaller;

// What the threads of one process share.
struct RemoteProcess {
  pid_t pid = 0;
  std::vector<proc::Vma> vmas;
  uint64_t sig_ign = 0, sig_cgt = 0;
  InjectedCode code;
  uint64_t scratch = 0;  // scratch memory (and in the fallback, the code's page after it: one range)
  size_t scratch_size = 0;
  size_t mapping_len = 0;
  RemoteSyscaller* owner = nullptr;
  int threads_in = 0;  // threads other than the owner that may run batches (whose tables are in the scratch memory)
};

// "task TID", as errors name a thread.
inline std::string Tid(pid_t tid) { return "task " + std::to_string(tid); }

}  // namespace cryo
