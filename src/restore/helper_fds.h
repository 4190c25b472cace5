// The restore helper's fd table (restore/helper.h): its own fds (status pipe,
// executable, the tree's user namespace) moved above every fd number of the
// image and everything else but the fd pool closed; then the image's fds
// installed at their numbers, once per shared table; and the userfaultfd of
// --lazy. Runs after fork: no exceptions.
#pragma once

#include <sys/types.h>

#include "base/status.h"
#include "files/shared_tables.h"
#include "restore/helper.h"

namespace cryo {

// The slot of `pid` in its sharing group's board.
int SlotOf(const SharingRole& r, pid_t pid);

// The helper's own fds out of the image's way, the rest but the pool closed.
Status ClearFdTable(HelperContext& ctx, int* exe_fd);

// The image's fds at their numbers, the pool closed, the locks taken back.
Status InstallFdTable(HelperContext& ctx);

// --lazy: a userfaultfd with the events cryo follows, at `min_fd` or above.
Result<int> MakeLazyUffd(int min_fd);

}  // namespace cryo
