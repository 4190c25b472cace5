// A tree in a mount namespace of its own (`unshare --mount --fork CMD`, a
// container): its mount table is recorded as changes to cryo's
// (ns/mount_table.h) and made again at restore in a fresh mount namespace
// (restore/mount_ns.h), tmpfs mounts with their content.
//
// cryo dumps such a tree from inside its mount namespace: before the tree is
// seized, cryo setns(2)es into it, so that every path cryo reads (fd and
// mapping paths, cwd, root, the tmpfs content, --snapshot-path) is the one
// the tree sees, and the restore, which makes the namespace first and works
// inside it, opens the same paths. The image directory and cryo's working
// directory must be the same directories in both namespaces.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// Before anything else of a dump (single-threaded: setns(2) of a mount
// namespace refuses a process whose threads share its fs_struct): when
// `pid`'s mount namespace is not cryo's, its table is compared with cryo's
// (refusing, by name, what cannot be made again) and cryo enters it.
// `images_dir`: checked to be the same directory there (empty for `cryo
// check -t`, which writes nothing: neither it nor the working directory is
// compared then). Nothing for a tree in
// cryo's mount namespace, or a tree in its own PID namespace but cryo's
// mount namespace (CheckTreePidns refuses that).
Status EnterTreeMountNs(pid_t pid, const std::string& images_dir);

// True once EnterTreeMountNs entered the tree's namespace.
bool DumpingInTreeMountNs();

// The recorded table, or null when the restore makes nothing (cryo's mount
// namespace, or what --pidns new makes anyway). Feature "mount-ns".
const image::MountNamespace* TreeMountTable();

// The tree's tmpfs mounts of its own (their content goes in the image) and
// every mount point of its namespace (not walked into as content).
std::vector<std::string> TreeTmpfsRoots();
std::set<std::string> TreeMountPoints();

// In DumpNamespaces: no process outside `tree` lives in the namespace (but
// pid 1 of the tree's own PID namespace, replaced by the restore's init).
Status CheckTreeMountNsOwned(const std::set<pid_t>& tree);

}  // namespace cryo::ns
