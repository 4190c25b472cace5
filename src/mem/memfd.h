// memfds (memfd_create(2)): recognising them, their names and seals (dump), and
// creating them again (restore). The content and the holders are handled for
// every kind of shared memory object alike (shm_dump.h, shm_restore.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// The NAME of a memfd from its /proc/PID/fd link "/memfd:NAME (deleted)", or
// from a maps name "/memfd:NAME" whose " (deleted)" suffix was already removed
// (`has_deleted_suffix` false). The name itself may contain spaces or end in
// " (deleted)"; only the kernel's suffix is removed. nullopt if not a memfd.
std::optional<std::string> MemfdName(std::string_view link, bool has_deleted_suffix);

// "shrink|grow|seal", "none" for 0; unknown bits as hex.
std::string SealsString(uint32_t seals);
// Whether every bit of `seals` is a seal this cryo knows (F_SEAL_*).
bool KnownSeals(uint32_t seals);

// Dump: what a read-only fd on the memfd (any fd of the inode) tells: seals,
// whether some open file counts as a writer, and the page size of a hugetlb
// memfd (MFD_HUGETLB: a hugetlbfs file).
Status ReadMemfdState(int fd, const std::string& what, image::ShmObject* out);
// Whether an open file of the inode of `ro_fd` (a read-only description)
// counts as a writer, i.e. makes exec(2) fail with ETXTBSY: any description
// opened for writing by open(2), but not memfd_create(2)'s own (the kernel
// makes that file without get_write_access). Tested with a read lease.
bool HasCountedWriter(int ro_fd);

// Restore: a new memfd named like `obj`, with its owner and mode, sized, still
// unsealed (seals go on once every holder has it: MemfdAddSeals).
Result<int> CreateMemfd(const image::ShmObject& obj);
Status MemfdAddSeals(int fd, const image::ShmObject& obj);

}  // namespace cryo
