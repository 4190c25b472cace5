// Restore of a tree's own mount namespace (feature "mount-ns", ns/tree_mntns.h
// for the dump): cryo's main thread unshares a fresh mount namespace, a copy
// of its own whose mounts are all made slaves first (nothing cryo mounts
// propagates out; mount_namespaces(7)), and makes the image's table in it
// (MountNamespace: remounts and propagation of the inherited mounts, fresh
// tmpfs mounts with their content, bind mounts, proc). Every process cryo
// forks then lives in it; files are reopened by the paths the tree saw. A
// failed restore leaves nothing: the namespace dies with its last process.
#pragma once

#include <string>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo {

// Before the image's files are put back and checked: the namespace made and
// entered, the mounts that need no fresh network or IPC namespace made (a
// tmpfs with its content). `images_dir` must be the same directory in it.
Status MakeTreeMountNs(const image::LoadedImage& img, const std::string& images_dir);

// Once the tree's fresh network and IPC namespaces are entered: its own
// sysfs and mqueue mounts.
Status FinishTreeMountNs(const image::LoadedImage& img);

// Whether the snapshot entry `path` is content of a tmpfs of the tree's
// namespace (put back by MakeTreeMountNs, not by the usual snapshot step).
bool InTreeTmpfs(const image::LoadedImage& img, const std::string& path);

}  // namespace cryo
