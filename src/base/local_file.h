// The plain local file behind a WritableFile, for writers that need a
// descriptor of their own on it (mem/direct_write.h). A separate interface
// that a file class may implement besides WritableFile: Env::Default()'s
// files do, and wrappers that only watch the writes (cli/counting_env.h)
// forward it; wrappers that change what a write means (--no-sync's,
// compressed and streamed page files) and test files do not.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "base/env.h"

namespace cryo {

class LocalFile {
 public:
  virtual ~LocalFile() = default;
  // The descriptor of the local file.
  virtual int local_fd() const = 0;
  // [offset, offset + n) was written through another descriptor of the
  // same file (what a write through the WritableFile would have noted).
  virtual void WrittenElsewhere(off_t offset, size_t n) = 0;
};

// `file` as a LocalFile, or null.
inline LocalFile* AsLocalFile(WritableFile* file) { return dynamic_cast<LocalFile*>(file); }

}  // namespace cryo
