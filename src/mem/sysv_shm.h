// SysV shared memory (shmget(2)/shmat(2)): finding segments (/proc/sysvipc/shm),
// and at restore recreating a segment with its original id, attaching it at an
// address, and marking it removed again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// One line of /proc/sysvipc/shm (the IPC namespace of the reader).
struct SysvSegment {
  int32_t key = 0;     // key_t; 0 = IPC_PRIVATE (also after IPC_RMID)
  int id = -1;         // shmid
  uint32_t mode = 0;   // permission bits | SHM_DEST (01000) | SHM_LOCKED (02000)
  uint64_t size = 0;   // bytes
  pid_t cpid = 0;      // creator
  pid_t lpid = 0;      // last shmat/shmdt
  uint64_t nattch = 0;
  uint32_t uid = 0, gid = 0, cuid = 0, cgid = 0;
  int64_t ctime = -1;  // seconds since the epoch of the creation or last IPC_SET; -1: not shown
};
Result<std::vector<SysvSegment>> ParseSysvShm(std::string_view text);
// Of the IPC namespace of `in_ns_of` (0: cryo's).
Result<std::vector<SysvSegment>> ReadSysvShm(pid_t in_ns_of = 0);

// The key of an attach from its maps name "/SYSV%08x" (the " (deleted)"
// suffix already removed); nullopt if the name is not one.
std::optional<int32_t> SysvKeyFromName(std::string_view name);

// Restore. Makes segment `obj.sysv_id()` exist with the image's key, size,
// owner and mode. A segment with that id that already exists is reused if it
// has the same key and size, is attached by no process and is not marked
// removed (the original, left behind by a killed or exited tree); anything
// else is refused naming the id. Returns whether cryo created it (and so must
// remove it if the restore fails).
Result<bool> MakeSysvSegment(const image::ShmObject& obj, std::vector<std::string>* warnings);
// Attaches segment `obj` at `at` over the premap reservation (SHM_REMAP), with
// SHM_RDONLY unless the VMA could write, then gives it the VMA's protection.
Status AttachSysvSegment(const image::ShmObject& obj, const image::Vma& v, uint64_t at, int prot);

}  // namespace cryo
