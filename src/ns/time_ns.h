// A tree's own time namespace (time_namespaces(7)): CLOCK_MONOTONIC and
// CLOCK_BOOTTIME shifted by per-namespace offsets (`unshare --time
// --monotonic N --boottime M --fork CMD`, a container). A time namespace
// holds nothing but its two offsets, fixed once a process has entered it, so
// the restore makes a fresh one with the same offsets (feature "time-ns",
// NamespaceTable.time).
//
// The kernel's rules shape what can be rebuilt: unshare(CLONE_NEWTIME) moves
// only the caller's time_for_children, and a process enters a time namespace
// only when it is created (or execs) with it as its parent's
// time_for_children; the offsets can be written (/proc/PID/timens_offsets,
// which shows and sets the caller's time_for_children's) only before that.
// So a tree is restored when every process lives where its creation put it:
//  - all of it in the namespace (the namespace was made above the tree's
//    root): cryo unshares before it creates the root (entry pid 0);
//  - or one process of it lives in cryo's time namespace with the tree's as
//    time_for_children (the `unshare --fork` process itself, a program that
//    unshared before forking), every descendant in the namespace: that
//    process's restore helper unshares before it creates its children.
// Anything else (two time namespaces, a process that moved with setns(2), a
// child created before its parent unshared) is refused at dump, by name; so
// is one with a user namespace of the tree's own that does not own it, or
// with a PID namespace of the tree's own too.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo::ns {

// One process's time namespaces (inodes of /proc/PID/ns/time and
// time_for_children) and its parent (0 or a pid outside the tree: none).
struct TimeNsFacts {
  pid_t pid = 0;
  pid_t parent = 0;
  uint64_t time = 0;
  uint64_t for_children = 0;
};

struct TimeNsPlan {
  uint64_t ns = 0;     // the tree's time namespace (0: the tree lives in cryo's, nothing to do)
  pid_t entry = 0;     // TimeNamespace.entry_pid
  pid_t reader = 0;    // a process whose timens_offsets show the namespace's
};

// Decides how the tree `procs` (root `root`) is restored in its time
// namespace, `cryo_ns` being cryo's own, or a refusal naming the process.
Result<TimeNsPlan> PlanTimeNamespace(const std::vector<TimeNsFacts>& procs, pid_t root, uint64_t cryo_ns);

// /proc/PID/timens_offsets ("monotonic 100 0\nboottime -5 250\n") <-> offsets in ns.
Status ParseTimensOffsets(std::string_view text, image::TimeNamespace* out);
std::string FormatTimensOffsets(const image::TimeNamespace& t);

// Before anything is written: the tree's time namespace, if it is not cryo's,
// into out->time (feature "time-ns"), or a refusal. `parent`: each live
// process's parent.
Status DumpTimeNamespace(const std::vector<pid_t>& live, const std::map<pid_t, pid_t>& parent, pid_t root,
                         image::NamespaceTable* out, std::set<std::string>* features);

// At restore, in cryo (`self` 0, before the root is created) and in each
// process's helper (`self` its pid, before it creates its children): makes the
// fresh time namespace with the image's offsets if the image says `self`
// makes it. The calling thread's time_for_children changes; the caller stays
// where it is.
Status EnterFreshTimeNamespace(const image::LoadedImage& img, pid_t self);

// With a user namespace of the tree's own (ns/user_ns.h) the time namespace
// must be owned by it: made by a process whose credentials are in it, which a
// restore helper is only once it has joined it, last, after its children are
// created. So the helper of the process that made it (entry_pid, else the
// root) makes it then (TimeNsAfterUserNsJoin: unshare, offsets, and the root
// enters it), and the helper of every process living in it enters it before
// its own join (TimeNsBeforeUserNsJoin: setns(2), waiting, bounded, for the
// maker). Nothing without a tree user namespace or a time namespace.
Status TimeNsBeforeUserNsJoin(const image::LoadedImage& img, pid_t self);
Status TimeNsAfterUserNsJoin(const image::LoadedImage& img, pid_t self);

}  // namespace cryo::ns
