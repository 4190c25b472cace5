// Objects the tree holds whose name was deleted (their /proc link ends in
// " (deleted)"): files and directories held open, mapped, as working
// directory or executable, FIFOs. Two cases:
//   - no name left (st_nlink 0): the restore creates the object again,
//     unlinked, in the directory of its former name (files/unlinked_*.h), if
//     that directory, or its nearest existing ancestor, is on the object's
//     file system;
//   - another name left (a hard link): reopened by that name, found at dump.
// And deleted-looking objects of pseudo file systems, refused by name:
// memfd_secret areas, Linux AIO rings, hugetlbfs memory.
#pragma once

#include <string>

#include "base/status.h"
#include "proc/path_check.h"

namespace cryo::paths {

// `o` was deleted and has no name left.
bool IsUnlinked(const Opened& o);
// `o` was deleted through the name /proc shows but still has another (a hard
// link): reopened through that name.
bool HasOtherName(const Opened& o);

// What a deleted-looking object of a pseudo file system is, for a refusal
// ("a memfd_secret area, ..."), or nullptr.
const char* PseudoFileKind(long fs_type);

// Why a restore could not create `o` (IsUnlinked) again, unlinked, on its
// file system ("" if it can): only regular files, directories and FIFOs can
// be; the directory of its former name (or its nearest existing ancestor)
// must be on the same file system.
std::string WhyNotRecreatable(const Opened& o);

// Where an unlinked object whose name was `path` is created again: the
// nearest existing directory among the ancestors of `path` ("/" at worst).
std::string RecreateDir(const std::string& path);

// Another name of `o` (HasOtherName): searched first in the directory of its
// former name, then in each mount of its file system, looking at no more than
// `budget` directory entries. An error says where it looked.
Result<std::string> FindOtherName(const Opened& o, size_t budget = 200000);

}  // namespace cryo::paths
