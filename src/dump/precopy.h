// Pre-copy (`cryo dump --pre-copy`): most of the tree's memory is copied in
// rounds while the tree runs on, and only what it wrote since the last round
// is copied while it is frozen for the final dump.
//
// Built from the incremental chain and the dirty tracking, not beside them:
// round 0 is a `--leave-running --track-mem` dump into DIR/pre-copy/0, round
// N a leave-running dump into DIR/pre-copy/N with --parent DIR/pre-copy/N-1,
// and the final dump (kill mode, or --leave-running) goes into DIR with the
// last round as its parent. The tracker (mem/dirty_tracker.h) protects the
// tree's private anonymous memory before each round reads a page, so a page
// written after it was read is named by the next round's PAGEMAP_SCAN; every
// page the tracking cannot vouch for (a VMA created, moved or replaced
// between rounds, a process forked, memory the tracking does not cover) is
// stored again by the next round and compared by content in the final one.
// A round is frozen only to read the VMAs and task state and to arm the
// tracking; it reads its pages once the tree runs again
// (dump/precopy_live.h), so a round's image is a parent only (feature
// "live-copied-pages"). DIR is then an ordinary image whose chain is inside
// it: `cryo restore -D DIR`.
//
// Rounds stop when one stores few pages (the dirty set is small), stores
// about as much as the one before (it stops shrinking: the tree writes as
// fast as cryo copies), or after --pre-copy-rounds rounds.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "dump/dump.h"

namespace cryo {

struct PreCopyOptions {
  int max_rounds = 6;                       // rounds while the tree runs, before the final dump
  uint64_t small_pages = 512;               // a round storing at most this many pages (2 MiB) is the last
  double shrink = 0.8;                      // a round storing more than this share of the one before is the last
  std::function<void(const std::string&)> report;  // one line per round (and the final dump)
  // A streamed pre-copy (`--to`): nothing is made here; before each round,
  // this tells the page server that a round's image comes (its number).
  std::function<Status(int round)> begin_round;
};

// The name of the rounds' directory inside the images directory.
inline constexpr const char* kPreCopyDirName = "pre-copy";

// The pre-copy rounds, then the final dump of `opts` (whose parent_dir must be
// empty: the chain is the rounds'). On failure the tree runs on as after a
// failed dump of `opts`, and every round's image is removed. A tracker this
// started ends with it (or with cryo, however cryo ends): the tree keeps no
// userfaultfd registration.
Status PreCopyDump(const DumpOptions& opts, const PreCopyOptions& pc, DumpStats* stats);

}  // namespace cryo
