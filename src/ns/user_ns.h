// A user namespace of the tree's own (`unshare --user --map-root-user ...`,
// user_namespaces(7)): every process of the tree lives in it, and every other
// namespace of the tree's own is owned by it.
//
// Dump: its uid/gid maps and setgroups state are read from the parent
// namespace (cryo's), with what a restore could not make the same refused by
// name (a nested namespace, one owned by another uid, processes of the tree
// in different ones, ids outside the maps, a namespace of the tree's owned by
// another user namespace, a time or private mount namespace with it).
//
// Restore: cryo makes a fresh user namespace with the same maps first, in a
// short-lived child (unshare(CLONE_NEWUSER)) whose maps cryo writes from
// outside, and keeps an fd of it. Every namespace of the tree's own is then
// made by another short-lived child that joined it (setns) before it
// unshares (so the namespace is owned by the user namespace, as the kernel
// does for `unshare --user --pid ...`), and cryo joins what that child made
// with setns(2): cryo itself stays in its own user namespace with every
// capability it needs to rebuild the tree (pids with set_tid, cgroups,
// rlimits, ptrace). Each restore helper joins the user namespace last,
// after the settings that need cryo's privileges and before the restorer blob
// switches its credentials: those are then the namespace's ids (the image's
// translated through the maps), and its capability sets are those of the
// image, relative to the namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo::ns {

// Before anything is written: the user namespace the live processes `pids`
// share, if it is not cryo's, read into `out` (feature "user-ns"), or a
// refusal naming what a restore would not make the same. `tree_owned`: the
// CLONE_NEW* flags of the namespaces the tree owns (made fresh at restore).
Status DumpUserNamespace(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                         std::set<std::string>* features);

// Restore, before any other namespace of the tree is made: a fresh user
// namespace with the image's maps (nothing without feature "user-ns", or if
// one was made already: a restore with --pidns new makes it before its init).
Status MakeTreeUserNs(const image::Inventory& inv, const image::NamespaceTable& ns);
// Whether MakeTreeUserNs made one in this process or an ancestor of it.
bool HaveTreeUserNs();

// unshare(flags) for the tree: without a tree user namespace, cryo's calling
// thread unshares; with one, a child that joined it unshares and the calling
// thread joins its new namespaces (setns(2); CLONE_NEWPID: the namespace of
// its next children). `what` names them in errors.
Status UnshareOwned(int flags, const std::string& what);

// What a restore of an image with a user namespace of the tree's own cannot
// do, checked before anything is made (processes sharing a filesystem
// context, which setns(CLONE_NEWUSER) refuses; namespaces the restore does
// not make in it).
Status CheckTreeUserNsFit(const image::LoadedImage& img);

// In a restore helper, after the settings that need cryo's privileges and
// while it is single-threaded: sets the image's supplementary groups (host
// ids; they stay as they are inside the namespace, where setgroups may be
// denied), then joins the tree's user namespace and closes its fd. Nothing
// without one.
Status JoinTreeUserNs(const image::ProcessCore& core);
// The fd JoinTreeUserNs joins with (-1: none), for a helper that moves its
// own fds out of the way of the image's.
int* TreeUserNsFd();

// A uid (gid: `gid`) of the image, as cryo's namespace shows it, inside the
// tree's user namespace; the id itself without one. An id outside the map
// is an error (the dump refuses such a tree).
Result<uint32_t> IdInTreeUserNs(uint32_t id, bool gid);

// The map lines "inside outside count\n" of `ranges` (what uid_map shows);
// and the host id `id` maps to inside them (false: not mapped).
std::string FormatIdMap(const google::protobuf::RepeatedPtrField<image::IdMapRange>& ranges);
bool MapIdInside(const google::protobuf::RepeatedPtrField<image::IdMapRange>& ranges, uint32_t id, uint32_t* inside);

}  // namespace cryo::ns
