// Incremental dumps (`cryo dump --parent DIR`, feature "incremental"): pages
// that did not change since the parent image are not stored again; the image
// names them in the parent's page file (Mm.parent_runs) and the restore reads
// them from there (image/parent_chain.h).
//
// What decides "did not change" is the content: every page run the parent
// stored at the same address, in the same VMA, of the same process (pid and
// start time, same boot) is read again and its XXH3-64 compared with the
// checksum the parent recorded; only runs that differ, and pages the parent
// did not have, are written. This reads all of the tree's memory but writes
// only what changed, and it cannot be fooled by a parent that is stale or by
// writes nothing tracked: a run whose bytes differ is always stored.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "mem/page_dump.h"

namespace cryo {

// Runs of leave-running and incremental dumps never cross an address that is
// a multiple of this: the same pages give the same runs in the parent and the
// child, whatever else of the VMA came or went, and a change costs one small
// run. (A plain dump's runs are up to kMaxRunBytes from their first page.)
inline constexpr uint64_t kIncrementalRunBytes = 256 << 10;

// One process of the parent image, as the child's dump sees it.
struct ParentProcessPages {
  uint64_t start_ticks = 0;          // ProcessCore.start_ticks (0: unknown, nothing taken)
  std::vector<image::Vma> vmas;      // its VMAs
  std::map<uint64_t, image::PageRun> runs;  // by address: every run of its pages, depth as the child names it
  // Pages a pre-copy round could not read (unmapped while it copied from the
  // running tree: zeros in its page file): never taken unread on the dirty
  // tracking's word (dump/precopy_live.h). Ascending address ranges.
  std::vector<std::pair<uint64_t, uint64_t>> unread;
};

// The parent image of a dump.
struct ParentForDump {
  image::ParentImage link;  // as the child's inventory records it
  bool same_boot = false;   // processes compare by start time within one boot only
  std::map<int, ParentProcessPages> processes;  // by pid
  image::SnapshotTable snapshot;  // its carried files (unchanged ones are not stored again)
};

// Loads `parent_dir` for a dump of the tree of `root` into `images_dir`: the
// whole image is loaded and validated (LoadImage, its own chain included);
// refused unless it is a complete leave-running dump of the same root pid.
// `boot_id`: this boot's.
Result<ParentForDump> LoadParentForDump(const std::string& parent_dir, const std::string& images_dir, pid_t root,
                                        const std::string& boot_id);

// Adds a process of an image (its core and mm as written) to `parent`, the
// image as a later dump's parent.
void AddParentProcess(const image::ProcessCore& core, const image::Mm& mm, ParentForDump* parent);

struct IncrementalCounts {
  uint64_t compared_pages = 0;  // read to compare with the parent
  uint64_t parent_pages = 0;    // unchanged: taken from the parent
  uint64_t tracked_pages = 0;   // of those, known unchanged by dirty tracking (not read)
};

struct DirtyPages;

// For mm's planned runs (PlanProcessPages with kIncrementalRunBytes; `pieces`
// their layout) of the seized process `pid`: the runs that hold what the
// parent's run at the same address held move to mm.parent_runs; the others are
// laid out again (runs, pieces, stored_pages, total_pages). With `dirty`
// (dirty_tracker.h), a run it says was not written since the parent is taken
// without reading it (unless it holds a page of parent.unread); every other
// candidate is compared, or with `compare` false (a pre-copy round, whose
// pages are read once the tree runs) stored.
Status TakeUnchangedFromParent(pid_t pid, const ParentProcessPages& parent, image::Mm* mm,
                               std::vector<PagePiece>* pieces, IncrementalCounts* counts,
                               const DirtyPages* dirty = nullptr, bool compare = true);

// Exposed for tests: the parts of `pieces` (laid out for some runs) that hold
// `keep` (runs of that layout, in file order), laid out back to back from
// kPageDataOffset; `kept` receives the runs with their new offsets.
std::vector<PagePiece> Relayout(const std::vector<PagePiece>& pieces, const std::vector<const image::PageRun*>& keep,
                                std::vector<image::PageRun>* kept);

}  // namespace cryo
