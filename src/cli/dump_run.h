// What `cryo dump` and `cryo migrate` share: their options' values and the
// dump they run (to a directory, or streamed to a page server).
#pragma once

#include <string>

#include "dump/dump.h"
#include "dump/precopy.h"
#include "stream/tls.h"

namespace cryo::cli {

// --compress of a streamed dump (dump --to, migrate).
inline constexpr char kWireCompressHelp[] =
    "with --to: compress page data and records on the wire: zstd, zstd:LEVEL (1 to 19) or none (default zstd, "
    "level 1); the image the page server writes is not compressed";

struct DumpRun {
  DumpOptions dump;
  std::string to;  // --to ADDR:PORT
  bool insecure = false;
  stream::TlsOptions tls;
  std::string compress = "zstd";  // the wire's
  bool pre_copy = false;
  bool pre_copy_rounds_given = false;  // --pre-copy-rounds
  PreCopyOptions pre_copy_opts;
  bool progress = false, no_sync = false, force = false;
  bool migrate = false;
  bool post_copy = false;  // migrate --lazy
};

// The checks of the options both commands share (after each command's own),
// then the dump; returns cryo's exit status.
int RunDump(DumpRun& r);

}  // namespace cryo::cli
