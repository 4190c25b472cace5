// The descriptor behind a WritableFile of Env::Default(): a plain local file
// that takes pwrite(2) at any offset, for writers that need a descriptor of
// their own on it (mem/direct_write.h).
#pragma once

#include "base/env.h"

namespace cryo {

// `file`'s descriptor if Env::Default() made it, else -1 (wrappers such as
// --no-sync's, compressed and streamed page files, discarded and test files).
int LocalFileFd(const WritableFile* file);

}  // namespace cryo
