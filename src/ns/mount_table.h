// A tree's mount table as changes to another (ns/tree_mntns.h): which of the
// tree's mounts are copies of the reference namespace's (cryo's, inherited
// by unshare(CLONE_NEWNS), perhaps remounted or with other propagation) and
// which were added (a tmpfs of its own, a bind mount, proc, sysfs, mqueue),
// in a form a restore can make again (image::MountNamespace). Pure: it reads
// nothing but its arguments (mountinfo text, proc(5)).
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// One line of /proc/PID/mountinfo, paths unescaped (proc(5): ID PARENT
// MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS).
struct MountLine {
  int id = 0, parent = 0;
  std::string dev;  // "MAJ:MIN"
  std::string root, point, options, fstype, source, super;
  int shared = 0, master = 0;  // peer group ids of "shared:N" and "master:N" (0: none)
  bool unbindable = false;
  std::vector<std::string> other_tags;  // optional fields cryo does not know
};
Result<std::vector<MountLine>> ParseMountLines(std::string_view text);

// The per-mount flags (MS_*) of an OPTIONS field ("rw,nosuid,relatime"), or a
// refusal naming an option cryo does not make again.
Result<unsigned> MountFlags(std::string_view options);

// The tree's table `tree` against the reference `ref`. `subject` starts
// every refusal ("pid 7: mount namespace: "). Refused, by name: a mount the
// restore cannot make again (a file system neither a tmpfs of the tree's own
// nor visible in `ref`, a bind whose source is not reachable), one of `ref`'s
// mounts gone from the tree's, a peer group shared with `ref`'s namespace,
// a slave of a group inside the namespace, unbindable mounts.
// `changed` is set if the tables differ in anything the restore makes.
Result<image::MountNamespace> DiffMountTables(const std::vector<MountLine>& tree, const std::vector<MountLine>& ref,
                                              const std::string& subject, bool* changed);

// "/mnt/x (ext4 /dev/sdb1)" for messages.
std::string DescribeMount(const MountLine& m);

// Whether `path` is `dir` or below it.
bool PathUnder(std::string_view path, std::string_view dir);

}  // namespace cryo::ns
