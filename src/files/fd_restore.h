// The restore half of the fd table: in the restore helper, every fd of the image
// is reopened at its number with its flags, offset and close-on-exec bit.
#pragma once

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// The highest fd number in the table (-1 if empty).
int MaxFd(const image::FdTable& table);
// Opens every fd of `table` at its number. The caller has moved its own fds above
// MaxFd(table) and closed everything below.
Status RestoreFds(const image::FdTable& table);

}  // namespace cryo
