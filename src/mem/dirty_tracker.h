// Dirty tracking for incremental dumps (`cryo dump --leave-running
// --track-mem`): which pages the tree wrote since its last dump, so that the
// next `--parent` dump reads only those instead of comparing every page.
//
// The kernel's means (this kernel has no soft-dirty): a userfaultfd in
// UFFD_FEATURE_WP_ASYNC mode (+ WP_UNPOPULATED) registered (UFFDIO_REGISTER,
// MODE_WP) on the process's private anonymous writable VMAs and
// write-protected (UFFDIO_WRITEPROTECT). A write to a protected page is not
// reported to anyone: the kernel just lifts the protection of that page
// (mm/memory.c, do_wp_page with userfaultfd_wp_async). PAGEMAP_SCAN on
// /proc/PID/pagemap then names the pages whose protection is gone
// (PAGE_IS_WRITTEN) and, with PM_SCAN_WP_MATCHING, protects them again in the
// same walk; with PM_SCAN_CHECK_WPASYNC it fails (EPERM) on a VMA that is not
// so registered any more (Documentation/admin-guide/mm/pagemap.rst).
//
// Who holds the userfaultfds: closing one unregisters its VMAs (and lifts
// every protection). Each is made inside its process by a remote
// userfaultfd(2), taken out with pidfd_getfd(2) and closed there at once (the
// program never sees an extra fd); then a tracker process of cryo's, outside
// the tree (a Sentinel that outlives cryo, named cryo-memtrack), holds them.
// A later dump finds it by an abstract UNIX socket named after the tree's
// root pid and start time, and asks it for the fds (the ioctls act on the
// mm of the process that created the fd, whoever calls them).
//
// Never wrong, only slower: the tracker records which image the protection
// is relative to (its generation), cleared before a dump touches the
// protection and set once that dump's image is complete. Pages are used as
// "unchanged" only if the parent image is that generation, the process is
// the same (pid and start time), the VMA still answers PM_SCAN_CHECK_WPASYNC
// (it fails after an mremap, an exec, a new mapping, a tracker that died) and
// the page is neither written nor the zero page. Anything else goes to the
// content comparison (incremental.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/sentinel.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

class SeizedProcess;

// What the tracking says of one process at this dump.
struct DirtyPages {
  // Address ranges protected since the parent image was dumped (sorted).
  std::vector<std::pair<uint64_t, uint64_t>> tracked;
  // Pages of `tracked` written since (or now the zero page), sorted.
  std::vector<std::pair<uint64_t, uint64_t>> written;
  // [start, end) lies inside one tracked range and holds no written page.
  bool Unchanged(uint64_t start, uint64_t end) const;
};

// One seized process of the tree, as the tracking needs it.
struct TrackedProcess {
  SeizedProcess* sp = nullptr;
  const std::vector<proc::Vma>* vmas = nullptr;  // for remote calls
  uint64_t sig_ign = 0, sig_cgt = 0;
  uint64_t start_ticks = 0;
  const image::Mm* mm = nullptr;  // its VMAs as described
};

class DirtyTracking {
 public:
  // The tracker of the tree of `root` (started at `root_ticks`), if one runs
  // (else null). While the session lives, IsTrackedByCryo (the audit's "uw"
  // check) is answered with its userfaultfds.
  static Result<std::unique_ptr<DirtyTracking>> Find(pid_t root, uint64_t root_ticks);
  // Starts a tracker for the tree (none runs) and returns a session to it.
  static Result<std::unique_ptr<DirtyTracking>> Start(pid_t root, uint64_t root_ticks);
  // Starts a tracker for the tree (none runs) that lives only as long as the
  // returned Sentinel (pre-copy, dump/precopy.h): when it is destroyed, or
  // cryo dies however it dies, the tracker exits and its userfaultfds close,
  // which unregisters the tree's memory and lifts every protection
  // (fs/userfaultfd.c, userfaultfd_release). Sessions reach it with Find.
  static Result<std::unique_ptr<Sentinel>> StartOwned(pid_t root, uint64_t root_ticks);
  ~DirtyTracking();
  DirtyTracking(const DirtyTracking&) = delete;
  DirtyTracking& operator=(const DirtyTracking&) = delete;

  // The image id the protection is relative to ("": none).
  const std::string& generation() const { return generation_; }

  // Before any page of the frozen tree is read. The tracker's generation is
  // cleared first. For each process whose protection is relative to
  // `parent_id` (its image id; "" for none), `dirty` receives what was
  // written since, and those pages are protected again. With `track`,
  // every private anonymous writable VMA is registered and protected (a
  // userfaultfd made for a process new to the tracker).
  Status Prepare(const std::vector<TrackedProcess>& procs, const std::string& parent_id, bool track,
                 std::map<pid_t, DirtyPages>* dirty);
  // The image `image_id` is complete: the protection is relative to it.
  Status Commit(const std::string& image_id);

  // Answers IsTrackedByCryo (exposed for the check function).
  bool Owns(pid_t pid, uint64_t start, uint64_t end);

 private:
  struct Held {
    uint64_t start_ticks = 0;
    UniqueFd uffd;
  };
  explicit DirtyTracking(UniqueFd sock) : sock_(std::move(sock)) {}
  Status Load();
  Status Request(char kind, const std::string& payload, int fd = -1);
  Result<UniqueFd> MakeUserfaultfd(const TrackedProcess& p);

  UniqueFd sock_;
  std::string generation_;
  std::map<pid_t, Held> held_;
  std::unique_ptr<Sentinel> tracker_;  // when this session started it
};

// The tracker's abstract socket name for a tree (without the leading NUL).
std::string TrackerSocketName(pid_t root, uint64_t root_ticks);

}  // namespace cryo
