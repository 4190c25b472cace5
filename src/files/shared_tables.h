// Processes (not threads) that share one fd table or one fs_struct (cwd, root
// and umask): clone(2) with CLONE_FILES or CLONE_FS without CLONE_THREAD.
//
// Dump: found with kcmp(2) KCMP_FILES / KCMP_FS. Restorable when the sharing
// runs along parent links (each sharing process shares with its parent, the
// way clone(2) made it): ProcessCore.shares_files_with_parent /
// shares_fs_with_parent. Refused by name: threads with a table of their own
// (unshare(2)), processes sharing without their parent, sharing with a process
// outside the tree.
//
// Restore: such a child is cloned with CLONE_FILES / CLONE_FS by its parent's
// helper, so the helpers of a *group* (processes linked by sharing) work on
// one table: only the table's first process (its leader) closes what the
// helpers do not need and installs the image's fds, once every member has put
// its own fds out of the way; the members take their locks once the leader has
// installed the fds; only the leader of a shared fs_struct sets the cwd, umask
// and root, and chroots last. They meet on a MAP_SHARED page (GroupBoard) that
// the group's topmost process maps before cloning the others.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "tree/restore_plan.h"

namespace cryo {

struct TreeProcess {
  pid_t pid = 0;
  pid_t ppid = 0;  // 0: the parent is outside the tree
  std::vector<pid_t> tids;
};

struct TableSharing {
  std::set<pid_t> files_with_parent;
  std::set<pid_t> fs_with_parent;
};

// Dump, right after the tree is seized: `procs` are its live processes.
Result<TableSharing> FindSharedTables(const std::vector<TreeProcess>& procs);

// Dump and restore: the plan clones every sharing process from its parent.
Status CheckSharingPlan(const RestorePlan& plan, const std::map<pid_t, const image::ProcessCore*>& cores);

// The flags a process is cloned with (CLONE_FILES, CLONE_FS).
uint64_t SharingCloneFlags(const image::ProcessCore& core);

// What a process of the image is in its group.
struct SharingRole {
  std::vector<pid_t> group;     // the processes of its group, ascending; empty if it shares nothing
  pid_t top = 0;                // the group's topmost process (maps the board)
  int index = -1;               // its slot on the board
  pid_t files_leader = 0;       // the process that installs the fd table it uses (itself if it shares none)
  pid_t fs_leader = 0;          // the process that sets the cwd, umask and root it uses
  std::vector<pid_t> files_users;  // every process using its fd table (itself alone if none)
  std::vector<pid_t> fs_users;     // every process using its fs_struct
  bool in_group() const { return !group.empty(); }
  bool shares_files() const { return files_users.size() > 1; }
  bool shares_fs() const { return fs_users.size() > 1; }
};
// The role of every live process of the image, computed once by cryo before
// the tree is cloned.
std::map<pid_t, SharingRole> SharingRoles(const std::map<pid_t, const image::ProcessCore*>& cores);

// The meeting point of a group's helpers. Slot i belongs to group[i].
class GroupBoard {
 public:
  enum Step : uint32_t {
    kReady = 1,      // its own fds are out of the way (numbers in the slot)
    kInstalled = 2,  // (a files leader) the image's fds are in the table
    kPrepared = 4,   // about to enter the restorer blob: no more paths resolved
  };
  // Maps the board in the calling helper (its children inherit it).
  static Result<GroupBoard> Create(size_t slots);
  bool valid() const { return slots_ != nullptr; }
  void Post(int slot, Step step);
  // Waits (bounded) until `slot` has posted `step`.
  Status Wait(int slot, Step step) const;
  void SetFds(int slot, int status_fd, int exe_fd);
  void Fds(int slot, int* status_fd, int* exe_fd) const;

 private:
  struct Slot {
    std::atomic<uint32_t> steps;
    int32_t status_fd, exe_fd;
  };
  Slot* slots_ = nullptr;
  size_t n_ = 0;
};

}  // namespace cryo
