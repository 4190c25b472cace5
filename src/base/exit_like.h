// Ending the calling process the way a wait status says (exit code or
// terminating signal, without a core dump): restored zombies, and the child
// behind a pidfd of a reaped process (files/pidfd.cc).
#pragma once

namespace cryo {

[[noreturn]] void ExitLike(int wait_status);

}  // namespace cryo
