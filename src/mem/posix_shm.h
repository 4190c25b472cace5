// POSIX shared memory (shm_open(3)): regular files of the tmpfs at /dev/shm,
// open or mapped, also unlinked. The image keeps their content; a restore
// writes it into a new file that replaces whatever holds the path then.
// A file of a hugetlbfs mount (an object with a huge_page_size, any absolute
// path) is restored the same way, on the mount its path names then.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// Whether a file at `path` on device `dev` is POSIX shared memory: under
// /dev/shm/ and on the file system mounted there.
bool IsPosixShm(std::string_view path, dev_t dev);

// Restore: creates the object's file under a temporary name in the directory
// of its path (so it can be renamed into place), with its owner, mode and size.
Result<int> CreatePosixShmFile(const image::ShmObject& obj, std::string* temp_path);
// Once the tree is restored: renames the file to its path, replacing any file
// there; an unlinked object is renamed only if the path is free, then unlinked,
// so its holders show "/dev/shm/NAME (deleted)" as before.
Status PublishPosixShmFile(const image::ShmObject& obj, const std::string& temp_path, std::vector<std::string>* warnings);

}  // namespace cryo
