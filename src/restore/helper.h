// The restore helper: the code that runs in each freshly cloned process
// (already holding its image PID) and turns it into the image's process, up to
// the jump into the restorer blob. It first clones its own children, so the
// tree is rebuilt with its shape, sessions and process groups. Runs after
// fork: no exceptions escape; failures are reported to cryo through the status
// pipe and end the process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cgroup/cgroup_restore.h"
#include "files/fd_pool.h"
#include "files/shared_tables.h"
#include "image/image_dir.h"
#include "mem/premap_window.h"
#include "mem/vma_restore.h"
#include "tree/restore_plan.h"
#include "proc/proc.h"

namespace cryo {

// Records on the status pipe, helper -> cryo. Each is one write(2) (atomic):
// kind (1 byte), pid (4), payload length (4), payload.
enum class HelperRecord : uint8_t {
  kWarning = 'W',  // text: a difference that does not stop the restore
  kError = 'E',    // text: the helper failed and exits
  kCreated = 'C',  // no payload: this process and its children exist
  kArea = 'A',     // u64 address, u64 length of the restorer area, u64 status fd, i64 userfaultfd (-1: none)
  kBlobFailure = 'B',  // restorer::Failure, written by the blob (its own layout)
  kJoined = 'J',   // no payload: this process is in its session and group
  kInfo = 'I',     // text: for cryo's log
};

// What the helper of a process needs to know of the other processes of the
// image, gathered once by cryo before it clones anything. A helper that
// walked every process of the image itself would make the restore of a tree
// quadratic in its size, and read pages of the whole loaded image (each page
// a helper has touched is one more page-table entry its clones copy).
struct ProcessFacts {
  int exit_signal = 0;       // the signal its parent gets when it exits, as it was cloned
  uint64_t clone_flags = 0;  // CLONE_FILES, CLONE_FS (shared_tables.h)
  // The pages its children inherit from it (their Mm.inherited ranges).
  std::vector<image::PageRange> children_inherit;
  std::vector<pid_t> zombie_children;  // its children that are zombies
  // VmasWithHugeRanges of its Mm (mem/thp.h): the premap's size (cryo) and
  // its layout (the helper) from the same walk.
  std::vector<bool> huge_vmas;
};
std::map<pid_t, ProcessFacts> GatherProcessFacts(const image::LoadedImage& img);

struct RseqRegistration {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint32_t sig = 0;
};

struct HelperContext {
  const image::LoadedImage* img = nullptr;
  const FdPool* pool = nullptr;
  pid_t pid = 0;        // the process this helper becomes
  pid_t parent = 0;     // the process that clones it (cryo for the root)
  // cryo's ends of the pipes above: the root closes them first (a helper that
  // held a write end would never see cryo go).
  std::vector<int> cryo_ends;
  int sync_fd = -1;     // root only: cryo writes the rseq registration once it seized the root
  int status_fd = -1;   // HelperRecords to cryo
  int go_fd = -1;       // one byte per process once the whole tree exists
  int ghost_fd = -1;    // one byte per ghost once every process joined its group
  const RestorePlan* plan = nullptr;
  const PremapWindow* window = nullptr;  // reserved by cryo, inherited by every helper
  // The parent's premapped private anonymous VMAs (each helper sets its own
  // before cloning its children).
  std::vector<InheritableVma> inheritable;
  int fill_threads = 2;        // for a process with much memory to fill
  bool shell_job = false;
  int max_image_fd = 2;        // the highest fd number of any process of the image
  const std::vector<int>* pool_fds = nullptr;  // the fd pool's fds, ascending (open in every helper)
  const std::vector<proc::Vma>* cryo_vmas = nullptr;  // cryo's mappings when it cloned the tree
  RseqRegistration rseq;  // glibc's registration, the same in every helper (fork copies it)
  const std::map<pid_t, SharingRole>* roles = nullptr;  // of every live process (shared_tables.h)
  const std::map<pid_t, ProcessFacts>* facts = nullptr;  // of every process
  // Set by each helper for itself: its part in a group of processes sharing
  // an fd table or fs_struct, and the group's board.
  SharingRole role;
  GroupBoard board;
  const cgroup::CgroupPlacement* cgroups = nullptr;  // where each process moves itself
  bool lazy = false;  // cryo restore --lazy (mem/lazy_plan.h)
};

[[noreturn]] void RunHelper(HelperContext ctx);

// How long a helper waits for cryo at most (cryo gives up on the whole tree
// after 120 s): every blocking wait of a helper is bounded.
inline constexpr int kHelperWaitSeconds = 150;

// Bytes of the restorer area a process needs (blob, arguments, stacks).
uint64_t RestorerAreaSize(const image::ProcessImage& p);

// clone3(2) with set_tid: the child gets exactly `pid`. A PID just freed can
// stay busy for a moment, so EEXIST is retried for a bounded time;
// `patience` bounds that retry (seconds). `flags`: CLONE_FILES, CLONE_FS.
Result<pid_t> CloneWithPid(pid_t pid, int exit_signal, double patience = 3.0, uint64_t flags = 0);

}  // namespace cryo
