// What every restored shared memory file (memfd or /dev/shm file) gets before
// its content: the image's owner, mode and size.
#pragma once

#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// fchown, fchmod and ftruncate of `fd` to `obj`'s; `what` names it in errors.
Status ShapeShmFile(int fd, const image::ShmObject& obj, const std::string& what);

}  // namespace cryo
