// The page file of a post-copy migration's image (cryo migrate --lazy,
// feature "remote-pages"): the runs the target restores lazily (those of
// VMAs mem/lazy_plan.h finds eligible) are not read here at all; they are
// marked `remote` (no checksum, a hole in the page file) and the source
// serves them from the frozen tree once the image is acknowledged
// (stream/postcopy.h). So the frozen time does not grow with the memory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/page_dump.h"

namespace cryo {

// Writes the pages of `mm`'s runs that are not remote (read from the seized
// process `pid`, `pieces` as planned) at their offsets with their checksums;
// marks the others remote and appends them (vaddr, bytes) to `remote`.
Status DumpPagesPostCopy(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                         std::vector<std::pair<uint64_t, uint64_t>>* remote);

}  // namespace cryo
