// The privileges cryo needs, checked before anything is done: seizing a
// process that is not one's own child, reading its pagemap and mem, and
// choosing pids at restore (clone3 set_tid) need CAP_SYS_PTRACE and
// CAP_CHECKPOINT_RESTORE (capabilities(7)); root has them.
#pragma once

#include "base/status.h"

namespace cryo {

inline constexpr const char* kNeedPrivileges =
    "cryo must run as root or with CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE (see cryo check)";

// An error with kNeedPrivileges unless both capabilities are effective
// (CAP_SYS_ADMIN does for CAP_CHECKPOINT_RESTORE, as in the kernel).
Status CheckPrivileges();

}  // namespace cryo
