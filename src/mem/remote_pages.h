// Where a lazy restore's pages come from when they are not in the image:
// post-copy migration (cryo migrate --lazy, feature "remote-pages"), whose
// page runs marked `remote` stay in the frozen source process until the
// target asks for them (stream/postcopy.h implements this over the stream).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "base/status.h"

namespace cryo {

class RemotePageSource {
 public:
  virtual ~RemotePageSource() = default;
  // Reads `len` bytes (whole pages) at `vaddr` of image process `pid` into
  // `out`. An error is final: the page cannot come (never zeros instead).
  virtual Status Fetch(pid_t pid, uint64_t vaddr, uint64_t len, void* out) = 0;
  // The tree is restored and about to be released: the source must commit
  // (never resume its original) before it runs here. An error: do not release.
  virtual Status Commit() = 0;
  // Every page is in: the source may kill its original.
  virtual Status AllIn() = 0;
};

}  // namespace cryo
