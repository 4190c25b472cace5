// cryo restore --join-ns KIND:PATH: the restored tree is made inside an
// existing namespace (a pod's network namespace stays; the container is
// restored into it), as container engines ask. cryo's main thread joins each
// with setns(2) before it forks anything, so every restored process is born
// in it; the namespace outlives a failed restore, which leaves nothing in it.
//
// Kinds: net, ipc, uts, mnt. Refused by name: a kind the image's tree owned
// itself (its state, restored into a fresh namespace, would be lost), a PATH
// that is no namespace of that kind (NS_GET_NSTYPE, ioctl_ns(2)), pid (not
// supported yet: the restore addresses its processes by the image's pids,
// which cryo would not see), mnt with --pidns new (whose /proc lives in the
// restore's own mount namespace) or a mount namespace in which the image
// directory is not the same, net for an image holding a network lock (its
// established TCP connections live in the namespace they were dumped in).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// "KIND:PATH" checked for its form (the command line's validator).
Status ParseJoinNs(const std::string& arg);

// Before anything is made: the namespaces of `args` opened, checked against
// the image, and joined.
Status JoinNamespaces(const std::vector<std::string>& args, const image::Inventory& inv,
                      const std::string& images_dir, bool new_pidns);

}  // namespace cryo::ns
