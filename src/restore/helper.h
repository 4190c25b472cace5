// The restore helper: the code that runs in the freshly cloned process (already
// holding the target's PID) and turns it into the image's process, up to the
// jump into the restorer blob. Runs after fork: no exceptions escape, failures
// are reported to cryo through `status_fd` and end the process.
#pragma once

#include <cstdint>
#include <string>

#include "image/image_dir.h"

namespace cryo {

// Records on the status pipe, helper -> cryo.
enum class HelperRecord : uint8_t {
  kWarning = 'W',  // u32 length + text: a difference that does not stop the restore
  kError = 'E',    // u32 length + text: the helper failed and exits
  kArea = 'A',     // u64 address, u64 length of the restorer area, u64 status fd (cryo removes both at the end)
  kBlobFailure = 'B',  // restorer::Failure
};

struct HelperContext {
  const image::ProcessImage* proc = nullptr;
  std::string images_dir;
  int sync_fd = -1;    // cryo writes the helper's rseq registration here once it is seized
  int status_fd = -1;  // HelperRecords to cryo
  int fill_threads = 2;
};

[[noreturn]] void RunHelper(const HelperContext& ctx);

}  // namespace cryo
