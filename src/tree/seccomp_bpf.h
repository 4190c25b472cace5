// A classic-BPF interpreter for seccomp filters (the programs
// PTRACE_SECCOMP_GET_FILTER returns), to know before the first remote call
// what a task's filters would do with the system calls cryo's injected code
// makes on its own if cryo dies (inject/remote_syscall.h "Tracer death"):
// the kernel ends the suspension of the filters (PTRACE_O_SUSPEND_SECCOMP)
// with the ptrace link, so those calls meet the filters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace cryo {

// struct seccomp_data (linux/seccomp.h).
struct SeccompCall {
  int32_t nr = 0;
  uint32_t arch = 0xc000003e;  // AUDIT_ARCH_X86_64
  uint64_t ip = 0;
  uint64_t args[6] = {};
};

// The action (SECCOMP_RET_*, with its data) one program returns for `call`;
// an error for what seccomp_check_filter (kernel/seccomp.c) would not have
// accepted, or a jump or load out of bounds.
Result<uint32_t> RunSeccompProgram(const std::string& program, const SeccompCall& call);

// What a chain of filters decides (seccomp_run_filters): every program runs
// and the action of highest precedence wins (KILL_PROCESS, KILL_THREAD, TRAP,
// ERRNO, USER_NOTIF, TRACE, LOG, ALLOW); of equal ones, the newest filter's.
// `chain` is oldest first.
Result<uint32_t> RunSeccompChain(const std::vector<const std::string*>& chain, const SeccompCall& call);

// "kill CALL (the process)", "fail CALL with errno N", ... for messages.
std::string SeccompVerdict(uint32_t action, const std::string& call);

}  // namespace cryo
