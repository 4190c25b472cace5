// The dump of each process's pages (its page file) and, for --leave-running,
// the copy-on-write end of the freeze (mem/cow_copy.h): which processes get a
// userfaultfd, protecting their memory as the last step of the freeze, and
// copying it once the tree runs again. Split from dump.cc (WriteImage drives
// these steps in order).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "dump/classify.h"
#include "dump/dump.h"
#include "dump/inspect.h"
#include "image/image_dir.h"
#include "mem/cow_copy.h"
#include "mem/page_dump.h"
#include "seize/seize.h"

namespace cryo {

// Processes with at most this much page data are read into memory and written
// on the image writer's thread; bigger ones stream through the page ring.
inline constexpr uint64_t kBufferedPages = 4 << 20;

// A big process's page file whose pages are copied once the tree runs again
// (leave-running, copy-on-write: mem/cow_copy.h).
struct DeferredPages {
  pid_t pid = 0;
  std::vector<PagePiece> pieces;
  std::unique_ptr<WritableFile> file;
  image::Mm* mm = nullptr;
  uint64_t bytes = 0;
  std::unique_ptr<CowCopy> cow;  // null: copied during the freeze after all
  double seconds = 0;
  // A pre-copy round (DumpOptions::live_copy): copied from the running tree
  // after the resume, unprotected (dump/precopy_live.h); `unread`: what
  // could not be read (zeros in the page file).
  bool live = false;
  std::vector<std::pair<uint64_t, uint64_t>> unread;
  // Closes `cow` once the copy is done, while the image is synced: closing
  // a userfaultfd walks the page tables of every VMA it registered (to clear
  // what protection is left), some 25 ms a GiB. Joined when this goes.
  struct Closer {
    std::thread thread;
    Closer() = default;
    Closer(Closer&&) = default;
    Closer& operator=(Closer&& o) {
      if (thread.joinable()) thread.join();
      thread = std::move(o.thread);
      return *this;
    }
    ~Closer() {
      if (thread.joinable()) thread.join();
    }
  } closer;
};

// The second half of a process's dump: its page file (written on the image
// writer's thread, but for the pages of a big process, streamed here), from
// its facts with the pages read ahead. Its records are written once the whole
// tree is collected (shared objects and terminals add to them). With `cow`,
// the pages are left for ProtectDeferred/CopyDeferred (in `deferred`).
Status DumpProcessPages(SeizedProcess& seized, ProcessFacts& facts, image::ImageWriter& writer,
                        const DumpOptions& opts, DumpedProcess* out, std::set<std::string>* features,
                        PhaseTimes* times, std::unique_ptr<CowCopy> cow, std::vector<DeferredPages>* deferred);

// Whether a --leave-running dump ends its freeze copy-on-write.
bool CowWanted(const DumpOptions& opts, const Classified& c);

// A userfaultfd in each process with more than kBufferedPages of private
// anonymous memory mapped (smaller ones are read ahead during the freeze
// anyway); one that cannot have it is copied during the freeze.
void OpenCowCopies(Classified& c, std::map<pid_t, std::unique_ptr<CowCopy>>* cow);

// The last step of the freeze: each deferred process's memory protected, or
// (when it cannot be) copied now. (Live copies stay for CopyDeferred.)
Status ProtectDeferred(image::ImageWriter* writer, std::vector<DeferredPages>* deferred);

// Once the tree runs again: the protected memory copied. After an error,
// *memory_changed tells whether the program unmapped or discarded memory not
// yet copied (CowCopy::memory_changed: a dump without copy-on-write can be
// made instead).
Status CopyDeferred(image::ImageWriter* writer, std::vector<DeferredPages>* deferred, bool* memory_changed);

}  // namespace cryo
